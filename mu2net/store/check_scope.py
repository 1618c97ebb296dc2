"""Which indices `store check` reads: every one (`--all`, the full-history audit) or, by
default, the versions gc retains (`collect.retention_window`: the head, the versions that were
the head within the retention window, those active leases build on). The default check then
costs what gc costs, whatever the history's length, and says which versions it covered;
older versions are gc's to forget (their blobs are deleted anyway) and `--all` audits them.

A bounded check finds the newest index as writers do (HEAD, then probing past gaps,
`CollectionOps._newest_present`): a gap or a damaged index inside the window is found; below
it, only `--all` (which lists `versions/`) finds it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from mu2net.errors import IntegrityError, StoreError
from mu2net.schema import SystemVersion
from mu2net.store.base import ObjectInfo
from mu2net.store.collect import retention_window
from mu2net.store.documents import parse_document
from mu2net.store.layout import version_key
from mu2net.store.versioned import VersionedStore

T = TypeVar("T")

if TYPE_CHECKING:
    from mu2net.store.maintenance import CheckReport

_VERSION_KEY_RE = re.compile(r"^versions/(\d{12})\.json$")


def fetch(store: VersionedStore, key: str) -> tuple[bytes | None, str]:
    """(bytes or None when missing, "" or why the object cannot be read at all)."""
    try:
        got = store.backend.read(key)
    except StoreError as exc:  # a local file edited by hand, a link out of the store
        return None, str(exc)
    return (None, "") if got is None else (got[0], "")


def _listed(list_fn: Callable[[str], Iterable[T]], prefix: str, report: CheckReport) -> list[T]:
    """The listing under `prefix`; [] with the problem recorded when it cannot be listed."""
    try:
        return list(list_fn(prefix))
    except StoreError as exc:
        report.problems.append(f"{prefix} cannot be listed: {exc}")
        return []


def listing(store: VersionedStore, prefix: str, report: CheckReport) -> list[str]:
    return _listed(store.backend.list, prefix, report)


def info_listing(store: VersionedStore, prefix: str, report: CheckReport) -> list[ObjectInfo]:
    return _listed(store.backend.list_info, prefix, report)


def _read_index(store: VersionedStore, number: int) -> tuple[SystemVersion | None, str]:
    """(the index, "") when it reads; (None, why) when damaged; (None, "") when missing."""
    data, error = fetch(store, version_key(number))
    if data is None:
        return None, error
    try:
        version = parse_document("index", data, version_key(number))
    except IntegrityError as exc:
        return None, str(exc)
    if version.number != number:
        return None, f"index {version_key(number)} holds version {version.number}"
    return version, ""


def scan_all(store: VersionedStore, report: CheckReport) -> dict[int, SystemVersion]:
    """Every index `versions/` lists (`store check --all`)."""
    numbers: list[int] = []
    for key in listing(store, "versions/", report):
        match = _VERSION_KEY_RE.match(key)
        if match is None:
            report.problems.append(f"unexpected object {key} under versions/")
            continue
        numbers.append(int(match.group(1)))
    versions: dict[int, SystemVersion] = {}
    damaged: dict[int, str] = {}
    for number in sorted(numbers):
        version, error = _read_index(store, number)
        if error:
            damaged[number] = error
        elif version is not None:  # else deleted while listing
            versions[number] = version
    _settle(report, versions, damaged, 0)
    return versions


def scan_window(store: VersionedStore, report: CheckReport, retention_s: float
                ) -> dict[int, SystemVersion]:
    """The versions gc retains (the default `store check`), newest first; no listing."""
    now = store.clock()
    try:
        newest = store._newest_present()
    except StoreError as exc:  # beyond a damaged HEAD (which the head check reports)
        report.problems.append(f"the newest version cannot be found: {exc}")
        return {}
    try:  # as gc: the versions active leases build on are retained
        floors = [lease.base_version for lease in store._scan_leases()[0]
                  if lease.expires_at > now and lease.base_version is not None]
    except StoreError:  # a lease that cannot be read at all: reported with the documents
        floors = []
    versions: dict[int, SystemVersion] = {}
    damaged: dict[int, str] = {}
    errors: dict[int, str] = {}
    walked: list[int] = []

    def read(number: int) -> SystemVersion | None:
        version, errors[number] = _read_index(store, number)
        return version

    if newest is not None:
        for number, version in retention_window(read, newest, now=now,
                                                retention_s=retention_s,
                                                lease_floor=min(floors, default=None)):
            walked.append(number)
            if version is not None:
                versions[number] = version
            elif errors[number]:
                damaged[number] = errors[number]
    report.covered = [min(walked), max(walked)] if walked else []
    _settle(report, versions, damaged, min(walked, default=0))
    return versions


def _settle(report: CheckReport, versions: dict[int, SystemVersion], damaged: dict[int, str],
            low: int) -> None:
    """The report's version fields and problems from the indices read (`low`: the oldest
    version covered; a missing one from there to the newest is a gap)."""
    report.problems.extend(damaged.values())
    for number, version in sorted(versions.items()):
        if number > 0 and version.parent != number - 1:
            report.problems.append(f"version {number} names parent {version.parent}, not "
                                   f"{number - 1}")
    report.versions = len(versions)
    report.damaged_indices = dict(damaged)
    present = set(versions) | set(damaged)
    report.newest = max(present) if present else None
    report.head = max(versions) if versions else None
    if report.newest is not None:
        report.gaps = sorted(set(range(low, report.newest + 1)) - present)
    if report.gaps:
        shown = ", ".join(version_key(n) for n in report.gaps[:5])
        report.problems.append(
            f"versions {report.gaps[:20]}{' ...' if len(report.gaps) > 20 else ''} are missing "
            f"below version {report.newest} (a gap): a lost index cannot be rebuilt and history "
            f"stops there; restore {shown} from a backup. The head and new commits (numbered "
            f"after {report.newest}) are unaffected")
    if report.newest is not None and report.newest != report.head:
        report.problems.append(f"the newest index, version {report.newest}, cannot be read: "
                               "no commit can be made on it until repair publishes a version "
                               f"repeating version {report.head}")
