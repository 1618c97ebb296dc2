"""The fuzz test of issue 23: a small committed store (init, then t1..t4) on each backend,
damaged at random (truncate, delete, replace with JSON of the wrong shape, swap two objects,
nest deeply, junk under a name, a symbolic link out of the store on the local backend), then
every read and admin command run against it through the CLI's `main`, in-process.

Each command must end with one line and no traceback, within its bound; `store check` must flag
the damage; `store repair --apply` must never leave fewer loadable tasks at the head than
before; gc must never delete a blob that a present, readable index references; nothing
outside the store is deleted. The generator is seeded (`random.Random(seed)`): a failure names
its seed, and `FUZZ_SEEDS=a-b` reruns a range.

Fast suite: 44 local and 6 GCS stores (about 20 s); `-m slow`: 450 local and 60 GCS more."""

from __future__ import annotations

import os
import random

import pytest
from store_damage import (
    COMMAND_BOUND_S,
    build_template,
    check_json,
    commands,
    copy_store,
    damage,
    library_reads,
    loadable_tasks,
    present,
    referenced_blobs,
    run_cli,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    return build_template(str(tmp_path_factory.mktemp("template")), extras=True)


def fuzz_one(template: str, backend: str, seed: int, tmp: str, *, report: bool = False
             ) -> list[str]:
    """The failures of one damaged store (empty when it holds up). `report`: run `mu2net
    report` too."""
    rng = random.Random(seed)
    outside = os.path.join(tmp, f"outside-{seed}")
    os.makedirs(outside)
    uri = copy_store(template, backend, tmp)
    what, must_flag = damage(uri, rng, outside)
    where = f"seed {seed} ({backend}, {what})"
    failures = []
    report = check_json(uri)
    if isinstance(report, str):
        failures.append(f"{where}: store check failed instead of reporting: {report}")
    elif must_flag and report["ok"]:
        failures.append(f"{where}: store check says OK")
    failures += [f"{where}: library read crashed: {crash}" for crash in library_reads(uri)]
    loadable = loadable_tasks(uri)
    referenced = present(uri, referenced_blobs(uri))
    outside_files = sorted(os.listdir(outside))
    for argv in commands(uri, os.path.join(tmp, f"report-{seed}.html") if report else ""):
        outcome = run_cli(*argv)
        name = " ".join(argv[:3])
        text = outcome.out + outcome.err
        if outcome.crash or "Traceback" in text:
            failures.append(f"{where}: `{name}` crashed:\n{outcome.crash or text}")
        elif not outcome.last_line:
            failures.append(f"{where}: `{name}` printed nothing")
        if outcome.seconds > COMMAND_BOUND_S:
            failures.append(f"{where}: `{name}` took {outcome.seconds:.1f} s")
        if argv[:3] == ("store", "repair", "--apply") and not outcome.crash:
            after = loadable_tasks(uri)
            if not loadable <= after:
                failures.append(f"{where}: repair --apply lost tasks {sorted(loadable - after)}")
    failures += [f"{where}: library read crashed: {crash}" for crash in library_reads(uri)]
    lost = referenced - present(uri, referenced)
    if lost:
        failures.append(f"{where}: blobs of present indices were deleted: {sorted(lost)}")
    if sorted(os.listdir(outside)) != outside_files:
        failures.append(f"{where}: files outside the store changed")
    return failures


def _seeds(default: range) -> range:
    spec = os.environ.get("FUZZ_SEEDS")
    if not spec:
        return default
    first, last = spec.split("-")
    return range(int(first), int(last) + 1)


@pytest.mark.parametrize(("backend", "seeds"), [("local", range(0, 44)), ("gcs", range(0, 6))])
def test_damaged_stores_hold_up(template, backend, seeds, tmp_path, request) -> None:
    if backend == "gcs":
        request.getfixturevalue("gcs_server")
    failures = [f for seed in _seeds(seeds) for f in fuzz_one(template, backend, seed,
                                                               str(tmp_path))]
    assert not failures, "\n".join(failures[:10])


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "seeds"), [("local", range(1000, 1450)),
                                                ("gcs", range(1000, 1060))])
def test_many_damaged_stores_hold_up(template, backend, seeds, tmp_path, request) -> None:
    """Every tenth store also runs `mu2net report` (the whole history, ~3 s each)."""
    if backend == "gcs":
        request.getfixturevalue("gcs_server")
    failures = [f for seed in _seeds(seeds) for f in fuzz_one(
        template, backend, seed, str(tmp_path), report=seed % 10 == 0)]
    assert not failures, "\n".join(failures[:10])
