"""What every store-facing operation costs as the system grows: each pipeline step's store
overhead (training excluded), `status --json`, the report, the queue's next task / gain
ranking, `rollback`, `gc`, `store check` and `repair`, at systems of 10 to 1,000 tasks with
histories of 10 to 10,000 versions, on the local backend and the GCS API (fake-gcs-server).

Run:
    .venv/bin/python benchmarks/system_growth.py            # full; writes
                                                            # benchmarks/results/system_growth.md
    .venv/bin/python benchmarks/system_growth.py --smoke    # tiny sizes, local only, seconds

Building a store. Version 0 is a real random root of the `testing` config (`store.init`).
Version 1 publishes all N tasks at once; each later version re-publishes one task (round
robin) with a new path whose head is its own: the shape of a schedule that appends one
version per run. Committing 10,000 versions one by one through `store.commit` would take
hours (each commit probes, scans and fsyncs), so the builder writes the same objects the
commit writes -- blob, canonical path document, the version's component-users summary (built
from the previous one and the changed path, as a commit does), create-only index of format 2
with the provenance fields a commit records (`kind`, `run_id`, `task`, `mode`, `path`,
`base_version`, `totals`, `committed_at`, ...), and `HEAD` -- straight through the backend,
with `committed_at` one hour apart ending now (an hourly schedule), so `gc`'s 7-day window
holds the last 168 versions. A local store is seeded without fsync (it is measured with it).

Measuring. Every operation opens the store afresh (a new pod: empty caches) on a backend
wrapper that counts requests (read, ranged read, exists, list page entries), bytes read and
bytes written; wall time is the best of `--repeats`; peak memory is tracemalloc's peak of
Python allocations during one call. `x` is the ratio against the smallest system. The run's
steps are the library calls each step makes besides training and the search's own arithmetic:
start (head, load the base system, the task's path, kept searches, lease), plan (load the
base system, draw the generation's parents uniformly over the root and the tasks, read each
one's ancestry, the component users), train's store part (load the base system, the task's
path, the component users, stage one new blob), select (renew the lease), commit (lease,
commit a new path of one task, load the committed version, its metrics), report (load,
metrics, the run's Markdown, the run's page, free the lease). Paths are read lazily, so each
step reads the ones it touches. `run total` is their sum with
one generation of one child.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from mu2net import queue as task_queue  # noqa: E402
from mu2net import report, run_page, status  # noqa: E402
from mu2net.blobs import DirBlobs  # noqa: E402
from mu2net.config import get_config  # noqa: E402
from mu2net.mutations import ParentPool, ancestry  # noqa: E402
from mu2net.root import build_root  # noqa: E402
from mu2net.schema import Path, SystemVersion, SystemView  # noqa: E402
from mu2net.scoring import path_metrics  # noqa: E402
from mu2net.store.base import ObjectBackend, ObjectInfo  # noqa: E402
from mu2net.store.gcs import GcsBackend  # noqa: E402
from mu2net.store.layout import (  # noqa: E402
    HEAD_KEY,
    blob_key,
    encode,
    encode_index,
    encode_pointer,
    iso_time,
    path_key,
    summary_key,
    version_key,
)
from mu2net.store.local import LocalBackend  # noqa: E402
from mu2net.store.maintenance import check_store  # noqa: E402
from mu2net.store.repair import repair_store  # noqa: E402
from mu2net.store.summaries import summary_totals  # noqa: E402
from mu2net.store.synthetic import synthetic_extension  # noqa: E402
from mu2net.store.versioned import VersionedStore  # noqa: E402
from mu2net.system_view import SystemSummary  # noqa: E402

BUCKET = "mu2net-bench"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "system_growth.md")
RETENTION_S = 7 * 86400.0
HOUR = 3600.0


class Counting(ObjectBackend):
    """Passes everything to `inner`, counting requests and bytes."""

    def __init__(self, inner: ObjectBackend) -> None:
        self.inner, self.uri = inner, inner.uri
        self.requests = self.bytes_read = self.bytes_written = 0

    def read(self, key: str) -> tuple[bytes, int] | None:
        self.requests += 1
        got = self.inner.read(key)
        self.bytes_read += len(got[0]) if got else 0
        return got

    def read_range(self, key: str, start: int, length: int) -> bytes | None:
        self.requests += 1
        got = self.inner.read_range(key, start, length)
        self.bytes_read += len(got) if got else 0
        return got

    def write(self, key: str, data: bytes, *, if_generation_match: int | None = None) -> int:
        self.requests += 1
        self.bytes_written += len(data)
        return self.inner.write(key, data, if_generation_match=if_generation_match)

    def exists(self, key: str) -> bool:
        self.requests += 1
        return self.inner.exists(key)

    def list(self, prefix: str) -> Iterator[str]:
        self.requests += 1
        for key in self.inner.list(prefix):
            self.bytes_read += len(key)
            yield key

    def list_info(self, prefix: str) -> Iterator[ObjectInfo]:
        self.requests += 1
        for info in self.inner.list_info(prefix):
            self.bytes_read += len(info.key)
            yield info

    def delete(self, key: str) -> None:
        self.requests += 1
        self.inner.delete(key)

    def sweep_partial(self, older_than: float, dry_run: bool = True) -> list[str]:
        return self.inner.sweep_partial(older_than, dry_run)


# === building a store =======================================================================


def build(backend: ObjectBackend, tasks: int, versions: int, folder: str) -> Path:
    """Versions 0..`versions` (see the module docstring); returns the root path."""
    config = get_config("testing")
    root, root_blobs = build_root(config, "random", seed=0)
    store = VersionedStore(backend)
    store.init(root, DirBlobs(os.path.join(folder, "root")).put_all(root_blobs),
               {"run_id": "bench-init"})
    view = SystemView(version=SystemVersion(number=0, parent=None, root=root.hash, tasks={}),
                      root=root, paths={})
    now = time.time()
    names = [f"task-{i:05d}" for i in range(tasks)]
    blob_dir = os.path.join(folder, "blobs")

    def new_path(task: str, number: int) -> Path:
        ext = synthetic_extension(view, task, blob_dir, run_id=f"bench-{number}",
                                  metrics={"validation_accuracy": 0.5 + (number % 7) / 20,
                                           "test_accuracy": 0.4 + (number % 5) / 10,
                                           "num_cycles": 1 + number // max(tasks, 1)})
        for blob_hash, file_path in ext.blob_files.items():
            with open(file_path, "rb") as fh:
                backend.write(blob_key(blob_hash), fh.read())
        backend.write(path_key(ext.path.hash), encode(ext.path.to_dict()))
        return ext.path

    def committed_at(number: int) -> str:
        return iso_time(now - (versions - number) * HOUR)

    def put_summary(summary: SystemSummary) -> str:
        """What a commit writes beside each index: the version's summary (index format 2)."""
        backend.write(summary_key(summary.hash), encode(summary.to_dict()))
        return summary.hash

    with ThreadPoolExecutor(16) as pool:
        current = dict(zip(names, pool.map(lambda t: new_path(t, 1), names)))
        table = {t: p.hash for t, p in current.items()}
        summary = SystemSummary.from_paths(current.items())
        seed = SystemVersion(number=1, parent=0, root=root.hash, tasks=dict(table),
                             summary=put_summary(summary),
                             provenance={"kind": "seed", "run_id": "bench-seed", "task": "",
                                         "committed_at": committed_at(1)})
        backend.write(version_key(1), encode_index(seed), if_generation_match=0)
        changed = {n: (names[n % tasks], new_path(names[n % tasks], n))
                   for n in range(2, versions + 1)} if versions > 1 else {}

        indices = []
        for number in range(2, versions + 1):
            task, path = changed[number]
            before = dict(table)
            summary = summary.replace_path(task, current[task], path)
            current[task], table[task] = path, path.hash
            indices.append(SystemVersion(
                number=number, parent=number - 1, root=root.hash, tasks=dict(table),
                summary=put_summary(summary),
                provenance={"kind": "extension", "run_id": f"bench-{number}", "task": task,
                            "mode": "iterate", "path": path.hash,
                            "method_version": root.method_version, "code_version": "bench",
                            "config_name": "testing", "base_version": number - 1,
                            "started_at": committed_at(number), "rebases": 0,
                            "totals": summary_totals(summary, before, table, task, path),
                            "committed_at": committed_at(number)}))
            if len(indices) >= 64:
                list(pool.map(lambda v: backend.write(version_key(v.number), encode_index(v),
                                                      if_generation_match=0), indices))
                indices = []
        list(pool.map(lambda v: backend.write(version_key(v.number), encode_index(v),
                                              if_generation_match=0), indices))
    backend.write(HEAD_KEY, encode_pointer(max(versions, 1)))
    return root


# === operations =============================================================================


def run_steps(store: VersionedStore, folder: str, run: str, shared: dict[str, Any]
              ) -> dict[str, Callable[[], Any]]:
    """The store part of each pipeline step of one run; `shared` carries what one step hands
    the next (the pipeline's artifacts)."""
    config = get_config("testing")

    def start() -> None:
        base = store.head()
        system = store.load_system(base)
        task = sorted(system.paths)[len(system.paths) // 2]
        store.kept_cycles(system, task)
        store.acquire_lease(run, ttl_s=3600, base_version=base)
        shared.update(base=base, task=task)

    def plan() -> None:
        # The store part of `plan_generation`: the parent draws (the uniform fallback of a new
        # population: the root or any task), each parent's ancestry, the component users.
        system = store.load_system(shared["base"])
        pool, users = ParentPool(system, []), system.component_users()
        rng = random.Random(shared["base"])
        for _ in range(config.search.children_per_generation):
            parent = pool.candidate(rng.randrange(pool.candidates()))
            ancestry(parent, pool, system.root)
        shared["users"] = len(users)

    def train() -> None:
        system = store.load_system(shared["base"])
        system.component_users()  # the child's planned accounted params
        ext = synthetic_extension(system, shared["task"], os.path.join(folder, run),
                                  own=("encoderblock_0",), run_id=run,
                                  metrics={"validation_accuracy": 0.99, "num_cycles": 9})
        store.stage_blobs(run, ext.blob_files, ttl_s=3600, base_version=shared["base"])
        shared["extension"] = ext

    def select() -> None:
        store.acquire_lease(run, ttl_s=3600, base_version=shared["base"])

    def commit() -> None:
        store.acquire_lease(run, ttl_s=3600, base_version=shared["base"])
        result = store.commit(shared["extension"])
        view = store.load_system(result.version)
        path = view.paths[shared["task"]]
        shared["commit"] = {"version": result.version, "created": result.created,
                            "bytes_written": result.bytes_written, "rebases": 0,
                            "decision": "", "task": shared["task"], "run_id": run,
                            "base_version": shared["base"], "path_hash": path.hash,
                            "published": True, "note": "", "new_components": []}
        path_metrics(path, view, config)

    def report_step() -> None:
        commit = shared["commit"]
        view = store.load_system(commit["version"])
        path = view.paths[commit["task"]]
        metrics = path_metrics(path, view, config)
        report.run_markdown(commit, metrics, view, config, [])
        run_page.run_html(store, view, commit["task"])
        store.release_lease(run)

    return {"start": start, "plan": plan, "train (store part)": train, "select": select,
            "commit": commit, "report step": report_step}


STEPS = ("start", "plan", "train (store part)", "select", "commit", "report step")


def operations(store: VersionedStore, folder: str, versions: int
               ) -> dict[str, Callable[[], Any]]:
    target = max(1, versions - 5)
    out = os.path.join(folder, "report", "system.html")
    return {
        "status --json": lambda: json.dumps(status.status_dict(store)),
        "report": lambda: report.write_report(store, out),
        "queue next (gain ranking)": lambda: task_queue.pick_task_to_iterate(store),
        "gc (dry run)": lambda: store.gc(retention_s=RETENTION_S, dry_run=True),
        "store check --quick": lambda: check_store(store, hash_blobs=False),
        "store check": lambda: check_store(store, hash_blobs=True),
        "repair (dry run)": lambda: repair_store(store, apply=False),
        "rollback": lambda: store.rollback_task(
            sorted(store.read_version(target).tasks)[0], target, f"rb-{uuid.uuid4().hex}"),
        "gc (apply)": lambda: store.gc(retention_s=RETENTION_S, dry_run=False),
    }


def measure_one(make: Callable[[], Counting], op: Callable[[Counting], Callable[[], Any]],
                repeats: int, *, traced_only: bool = False, peak: bool = True
                ) -> dict[str, float]:
    """Best wall time of `repeats` untraced calls, then the peak of one call under tracemalloc
    (which slows Python down, so it is never timed); `traced_only`: one traced call, timed
    (mutating operations that cannot be repeated alike)."""
    best: dict[str, float] | None = None
    for _ in range(0 if traced_only else repeats):
        backend = make()
        call = op(backend)
        start = time.perf_counter()
        call()
        elapsed = time.perf_counter() - start
        row = {"ms": 1000 * elapsed, "requests": backend.requests, "read": backend.bytes_read,
               "written": backend.bytes_written}
        if best is None or row["ms"] < best["ms"]:
            best = row
    if not peak:
        assert best is not None
        return {**best, "peak": 0.0}
    backend = make()
    call = op(backend)
    tracemalloc.start()
    start = time.perf_counter()
    call()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if best is None:
        best = {"ms": 1000 * elapsed, "requests": backend.requests, "read": backend.bytes_read,
                "written": backend.bytes_written}
    return {**best, "peak": peak / 1024}


def measure(make_inner: Callable[[], ObjectBackend], tasks: int, versions: int,
            repeats: int, folder: str, *, quick: bool = False,
            make_builder: Callable[[], ObjectBackend] | None = None,
            skip: frozenset[str] = frozenset()) -> dict[str, dict[str, float]]:
    """Every operation on a store of `tasks` x `versions`; `quick` (smoke): one traced call of
    each read-only operation instead of the untimed-then-traced pair."""
    started = time.perf_counter()
    build((make_builder or make_inner)(), tasks, versions, folder)
    built_s = time.perf_counter() - started

    def make() -> Counting:
        return Counting(make_inner())

    rows: dict[str, dict[str, float]] = {}
    for name in operations(VersionedStore(make()), folder, versions):
        if name in ("rollback", "gc (apply)") or name in skip:
            continue  # mutating: measured once, after the run

        def op(backend: Counting, name: str = name) -> Callable[[], Any]:
            return operations(VersionedStore(backend), folder, versions)[name]
        rows[name] = measure_one(make, op, repeats, traced_only=quick)
    # One run: every step on a fresh store (a new pod), in order (each commits one version).
    total = {"ms": 0.0, "requests": 0.0, "read": 0.0, "written": 0.0, "peak": 0.0}
    # The last run, traced, gives the peaks (and, in a quick smoke, the times too).
    for r in range(repeats if quick else 0, repeats + 1):
        run, state = f"bench-run-{uuid.uuid4().hex[:8]}", {}
        for step in STEPS:
            def op(backend: Counting, step: str = step, run: str = run,
                   state: dict[str, Any] = state) -> Callable[[], Any]:
                return run_steps(VersionedStore(backend), folder, run, state)[step]
            got = measure_one(make, op, 1, traced_only=r == repeats, peak=r == repeats)
            if r == repeats and step in rows:
                rows[step]["peak"] = got["peak"]
            elif r == repeats:
                rows[step] = got
            elif r == 0 or got["ms"] < rows[step]["ms"]:
                rows[step] = got
    for step in STEPS:
        for k in total:
            total[k] = total[k] + rows[step][k] if k != "peak" else max(total[k],
                                                                         rows[step][k])
    rows["run total"] = total
    for name in ("rollback", "gc (apply)"):
        if name in skip:
            continue

        def op(backend: Counting, name: str = name) -> Callable[[], Any]:
            return operations(VersionedStore(backend), folder, versions)[name]
        rows[name] = measure_one(make, op, 1, traced_only=True)
    rows["_build_s"] = {"ms": 1000 * built_s}
    return rows


# === output =================================================================================

OPS_ORDER = (*STEPS, "run total", "status --json", "report", "queue next (gain ranking)",
             "rollback", "gc (dry run)", "gc (apply)", "store check --quick", "store check",
             "repair (dry run)")


def table(results: dict[tuple[int, int], dict[str, dict[str, float]]]) -> str:
    sizes = sorted(results, key=lambda s: (s[0] * s[1], s))
    base = results[sizes[0]]
    lines = ["| operation | tasks | versions | ms | x | requests | x | bytes read | x "
             "| bytes written | peak KiB | x |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for op in OPS_ORDER:
        if op not in base:
            continue
        b = base[op]
        for size in sizes:
            row = results[size][op]
            lines.append(
                f"| {op} | {size[0]:,} | {size[1]:,} | {row['ms']:.1f} "
                f"| {row['ms'] / b['ms']:.2f} | {row['requests']:,.0f} "
                f"| {row['requests'] / max(b['requests'], 1):.2f} | {row['read']:,.0f} "
                f"| {row['read'] / max(b['read'], 1):.2f} | {row['written']:,.0f} "
                f"| {row['peak']:,.0f} | {row['peak'] / max(b['peak'], 1e-9):.2f} |")
    return "\n".join(lines)


def start_emulator():
    from store_scaling import start_emulator as start
    return start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, local only")
    parser.add_argument("--backends", default=None, help="comma list of local,gcs")
    parser.add_argument("--local-sizes", default="10x10,100x10,1000x10,10x1000,100x1000,"
                        "1000x1000,100x10000", help="tasks x versions, comma separated")
    parser.add_argument("--gcs-sizes", default="10x10,100x10,10x100,100x100")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma list of operations not to measure "
                        "(e.g. the full-history audits at the largest size)")
    parser.add_argument("--output", default=None, help=f"results file (full run: {RESULTS})")
    args = parser.parse_args()
    backends = (args.backends or ("local" if args.smoke else "local,gcs")).split(",")
    repeats = args.repeats or (1 if args.smoke else 3)
    output = args.output or (None if args.smoke else RESULTS)
    sizes_of = {"local": "3x3,12x12" if args.smoke else args.local_sizes,
                "gcs": "3x3,12x12" if args.smoke else args.gcs_sizes}
    skip = frozenset(filter(None, args.skip.split(",")))
    sections = []
    server = start_emulator() if "gcs" in backends else None
    try:
        for name in backends:
            results = {}
            for spec in sizes_of[name].split(","):
                tasks, versions = (int(x) for x in spec.split("x"))
                with tempfile.TemporaryDirectory() as folder:
                    if name == "local":
                        root = os.path.join(folder, "store")
                        os.makedirs(root)

                        def make(root: str = root) -> ObjectBackend:
                            return LocalBackend(root)

                        def builder(root: str = root) -> ObjectBackend:
                            return LocalBackend(root, fsync=False)  # seeding only
                    elif name == "gcs":
                        prefix = uuid.uuid4().hex

                        def make(prefix: str = prefix) -> ObjectBackend:
                            return GcsBackend(BUCKET, prefix)
                        builder = make
                    else:
                        raise SystemExit(f"unknown backend {name!r}; valid: local, gcs")
                    rows = measure(make, tasks, versions, repeats, folder, quick=args.smoke,
                                   make_builder=builder, skip=skip)
                results[(tasks, versions)] = rows
                print(f"{name} {tasks}x{versions}: built in {rows['_build_s']['ms'] / 1000:.1f}"
                      f" s; run total {rows['run total']['ms']:.0f} ms, "
                      + ", ".join(f"{op} {rows[op]['ms']:.0f}" for op in OPS_ORDER[7:]
                                  if op in rows),
                      flush=True)
            title = {"local": "Local folder (fsync on)",
                     "gcs": "GCS API (fake-gcs-server on loopback, google-cloud-storage client)"}
            sections.append(f"### {title[name]}\n\n{table(results)}")
            print(f"\n{sections[-1]}\n")
    finally:
        if server is not None:
            server.stop()
    if output:
        command = "python benchmarks/system_growth.py " + " ".join(sys.argv[1:])
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        text = (f"# System growth\n\nRevision {common.git_revision()}, {now}; "
                f"machine: {common.machine()}.\nCommand: `{command.strip()}` ({repeats} "
                "repeats: times are the best).\n\n"
                + "\n\n".join(sections) + "\n")
        os.makedirs(os.path.dirname(output), exist_ok=True)
        with open(output, "w") as f:
            f.write(text)
        print(f"wrote {output}")


if __name__ == "__main__":
    main()
