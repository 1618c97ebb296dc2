"""Mutation score per module from mutmut 3's results (`make mutation` prints it).

mutmut 3 keeps each mutant's exit code in `mutants/<module>.py.meta`; this counts them per
module: killed (a test failed or timed out), survived, no tests (no selected test reaches the
function) and not checked (the run stopped before it). Run from the repository root.
"""

from __future__ import annotations

import glob
import json
from collections import Counter

from mutmut.stats import status_by_exit_code


def main() -> None:
    for meta in sorted(glob.glob("mutants/mu2net/**/*.py.meta", recursive=True)):
        with open(meta) as f:
            codes = json.load(f)["exit_code_by_key"]
        counts = Counter("not checked" if code is None else status_by_exit_code[code]
                         for code in codes.values())
        if not codes or counts["not checked"] == len(codes):
            continue
        killed = counts["killed"] + counts["timeout"]
        checked = len(codes) - counts["not checked"]
        print(f"{meta[len('mutants/'):-len('.meta')]}: {killed}/{len(codes)} killed "
              f"({100 * killed / len(codes):.0f} %); {checked} checked; "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
