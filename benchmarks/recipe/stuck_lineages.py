"""How often a search cycle keeps no child, and why (`mu2net.lineage`), over the JSON files
that `search_cycles.py --json FILE` wrote: one summary per group of files given as
`NAME=FILE,FILE,...` (e.g. one group per arm of an A/B), with the mean final test accuracy.

Run: .venv/bin/python benchmarks/recipe/stuck_lineages.py base=a0.json,a1.json own=b0.json
"""

import json
import sys

from mu2net.lineage import summarise


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for group in sys.argv[1:]:
        name, _, files = group.rpartition("=")
        records, finals = [], []
        for file_name in files.split(","):
            with open(file_name) as fh:
                cycles = json.load(fh)["cycles"]
            records += cycles
            last = {}
            for c in cycles:
                last[c["task"]] = c["test_accuracy"]
            finals += list(last.values())
        mean = sum(finals) / len(finals) if finals else float("nan")
        print(f"{name or files}: final test {[round(x, 4) for x in finals]} mean {mean:.4f}")
        print("  " + json.dumps(summarise(records)))


if __name__ == "__main__":
    main()
