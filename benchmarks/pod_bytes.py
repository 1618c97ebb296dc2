"""Bytes each pod of one onboarding run downloads as input artifacts, before and after the
light steps got a task-info artifact and ingest started preparing images at the largest size
training uses (issue 21), at a config's search shape, for tasks the size of Oxford Flowers-102
and DTD.

Run:
    .venv/bin/python benchmarks/pod_bytes.py            # gpu config; writes
                                                        # benchmarks/results/pod_bytes.md
    .venv/bin/python benchmarks/pod_bytes.py --smoke    # 2 images per split, seconds

Each task is synthetic uint8 arrays of the real split sizes, image shape and class count (the
bytes of a raw-uint8 record do not depend on the pixels). They go through the real code: an
`ArrayTask` (content hash), `prepare.shrink_to` at the config's largest `ds_image_size`
(after only), the prepared-task writer of `mu2net.tasks.ingest` (TFRecord shards and
task_info.json) and the request document `ingest_step` writes. Writing 6 GB per task is more
than this machine should do, so `--sample` images per split are written and each split's
shard bytes are scaled to its real size: every record is the same raw image plus a label, so
bytes per record are constant (measured, not assumed: the script checks that two sample
sizes give the same bytes per record). Before = today's main, where `start`, every `train`
child, the commit and `report` download the whole `task` Dataset at native resolution;
after = `start` and `report` download the `info` artifact (one request.json), the children and
the commit the prepared images at the training size. The small search-state, plan, result and
extension artifacts (hashes only) are the same before and after and are not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TASKS = {  # name: (split sizes, image shape [H, W, C], classes)
    "flowers102": ({"train": 1020, "validation": 1020, "test": 6149}, (500, 500, 3), 102),
    "dtd": ({"train": 1880, "validation": 1880, "test": 1880}, (640, 480, 3), 47),
}


def _folder_bytes(folder: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for root, _, files in os.walk(folder):
        for name in files:
            sizes[os.path.relpath(os.path.join(root, name), folder)] = \
                os.path.getsize(os.path.join(root, name))
    return sizes


def prepared_bytes(name: str, sizes: dict[str, int], shape: tuple[int, int, int],
                   classes: int, max_size: int | None, sample: int) -> dict[str, float]:
    """Bytes of the prepared task folder and of its request document, for the real split
    sizes, from `sample` images per split written by the real writer."""
    import numpy as np

    from mu2net.config import canonical_json
    from mu2net.task_info import SPLITS
    from mu2net.tasks.base import ArrayTask
    from mu2net.tasks.ingest import INFO_FILE, _write, prepared_dir
    from mu2net.tasks.prepare import shrink_to

    rng = np.random.default_rng(0)
    class_names = [f"class_{i:03d}" for i in range(classes)]
    per_record = {}
    shape_out = shape
    info_doc = b""
    for n in (sample, 2 * sample):  # two sample sizes: bytes per record must agree
        splits = {s: (rng.integers(0, 256, (n, *shape), dtype=np.uint8),
                      np.arange(n) % classes) for s in SPLITS}
        task = shrink_to(ArrayTask.from_arrays(name, splits, class_names, source=f"tfds:{name}"),
                         max_size)
        shape_out = tuple(task.info.image_shape)
        with tempfile.TemporaryDirectory() as folder:
            _write(task, prepared_dir(folder, name))
            files = _folder_bytes(folder)
        for split in SPLITS:
            shard = sum(v for k, v in files.items() if os.path.basename(k).startswith(split))
            per_record.setdefault(split, []).append(shard / n)
        info_doc = files[f"{name}/{INFO_FILE}"]
    for split, (a, b) in per_record.items():
        if abs(a - b) > 2:  # labels are varints: at most a byte or two apart
            raise SystemExit(f"{name} {split}: bytes per record differ with the sample size "
                             f"({a:.1f} vs {b:.1f}): scaling would be wrong")
    from mu2net.task_info import TaskInfo

    info = TaskInfo(name=name, source=f"tfds:{name}", num_classes=classes,
                    class_names=tuple(class_names), split_sizes=dict(sizes),
                    image_shape=shape_out, content_hash="0" * 64,
                    description=f"TFDS {name} from gs://bucket/tensorflow_datasets")
    request = {"spec": f"tfds:{name}", "mode": "onboard", "name": None, "queue_entry": "",
               "data_dir": "gs://bucket/tensorflow_datasets", "task": name,
               "task_info": info.to_dict(), "run_id": "run-0123456789"}
    request_bytes = len(canonical_json(request).encode())
    shards = sum(per_record[s][-1] * sizes[s] for s in SPLITS)
    return {"dataset": shards + info_doc + request_bytes, "info": float(request_bytes),
            "shape": list(shape_out)}


def measure(config_name: str, target: str, sample: int, tasks: list[str]) -> dict:
    from mu2net.config import get_config

    config = get_config(config_name)
    largest = max(int(s) for s in config.hparams.get("ds_image_size").values)
    generations = config.search.generations_per_cycle
    children = config.search.children_per_generation
    rows = []
    for name in tasks:
        sizes, shape, classes = TASKS[name]
        before = prepared_bytes(name, sizes, shape, classes, None, sample)
        after = prepared_bytes(name, sizes, shape, classes, largest, sample)
        pods = [  # (pod, count per run, bytes before, bytes after)
            ("ingest", 1, 0.0, 0.0),
            ("start", 1, before["dataset"], after["info"]),
            ("plan", generations, 0.0, 0.0),
            ("train child", generations * children, before["dataset"], after["dataset"]),
            ("select", generations, 0.0, 0.0),
            ("commit", 1, before["dataset"], after["dataset"]),
            ("report", 1, before["dataset"], after["info"]),
        ]
        rows.append({"task": name, "split_sizes": sizes, "native_shape": list(shape),
                     "prepared_shape": after["shape"], "classes": classes,
                     "pods": [{"pod": p, "count": c, "before": b, "after": a}
                              for p, c, b, a in pods],
                     "total_before": sum(c * b for _, c, b, _ in pods),
                     "total_after": sum(c * a for _, c, _, a in pods)})
    return {"config": config_name, "target": target, "largest_image_size": largest,
            "generations": generations, "children": children, "sample": sample, "rows": rows}


def human(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B" if n else "0"


def markdown(result: dict) -> str:
    lines = [common.header("Bytes each pod downloads per run"), "",
             f"Config `{result['config']}` (children on {result['target']}): "
             f"{result['generations']} generations x {result['children']} children, largest "
             f"`ds_image_size` {result['largest_image_size']}. Input-artifact bytes per pod "
             f"(the dataset or the task info; the hashes-only state/plan/result/extension "
             f"artifacts are the same before and after and not counted). {result['sample']} "
             "synthetic images per split written by the real writer, scaled to the real "
             "split sizes (constant bytes per record, checked). Before: today's main (every "
             "consumer of `task` downloads the whole dataset at native size); after: light "
             "steps get `info`, children and the commit the data at the training size. The "
             "ingest pod reads the task's source (e.g. the TFDS files in the data dir), the "
             "same before and after, and downloads no artifact.", ""]
    for row in result["rows"]:
        sizes = row["split_sizes"]
        lines += [f"## {row['task']}: {sizes['train']:,} / {sizes['validation']:,} / "
                  f"{sizes['test']:,} images, {row['classes']} classes, native "
                  f"{'x'.join(map(str, row['native_shape']))}, prepared "
                  f"{'x'.join(map(str, row['prepared_shape']))}", "",
                  "| pod | pods per run | before, per pod | after, per pod |",
                  "|---|---:|---:|---:|"]
        for pod in row["pods"]:
            lines.append(f"| {pod['pod']} | {pod['count']} | {human(pod['before'])} | "
                         f"{human(pod['after'])} |")
        lines += [f"| **per run** | {sum(p['count'] for p in row['pods'])} | "
                  f"**{human(row['total_before'])}** | **{human(row['total_after'])}** |", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="2 images per split, seconds")
    parser.add_argument("--config", default="gpu")
    parser.add_argument("--target", default="gpu")
    parser.add_argument("--sample", type=int, default=16, help="images written per split")
    parser.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "pod_bytes.md"))
    parser.add_argument("--json", help="also write the numbers as JSON here")
    args = parser.parse_args()
    sample = 2 if args.smoke else args.sample
    result = measure(args.config, args.target, sample, list(TASKS))
    for row in result["rows"]:
        for key in ("total_before", "total_after"):
            if not math.isfinite(row[key]):
                raise SystemExit(f"{row['task']} {key} is not finite: {row[key]}")
    common.write(args.out, markdown(result) + "\n")
    if args.json:
        common.write(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
