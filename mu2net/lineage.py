"""Why a task's lineage gets stuck: per search cycle, whether it kept a child and why not.

A cycle *keeps a child* when the path it ends with (what it publishes) is one of its own
children. An iterate cycle that ends with the path it started from kept none: its lineage is
stuck. Every child is classed by where it came from and how it fared against its bar:

* `self`: its parent is the task's own path; it must score >= the parent's score (the bar).
  `kept` if it did; a `near` miss if it fell short by less than the bar's noise (two standard
  errors of an accuracy on the validation subset, `noise_margin`): a bar measured without the
  max-of-V selection bias might have let it through (cause 4 of issue 26); else `below`.
* `restart`: its parent is the root or another task's path (the uniform fallback of decay
  selection, cause 3). It always joins the population, but it only helps if it beats the
  score the cycle started from: `useful`, else `wasted`.

A stuck cycle's cause: `noise` if some self child was a near miss, else `restarts` if no child
descended from the own lineage, else `worse` (every self child clearly below its bar).
`start_inflation` is the start path's best validation minus its final one: how much the
max-of-V choice lifted the bar its children face.

`cycle_record` reads one cycle from its `SearchState` (the `state.json` of `evolve`);
`summarise` aggregates records (`benchmarks/recipe/stuck_lineages.py` prints it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mu2net.schema import Path
from mu2net.search_state import SearchState

CAUSES = ("noise", "restarts", "worse")


def noise_margin(quality: float, examples: int) -> float:
    """Two standard errors of an accuracy `quality` measured on `examples` examples."""
    q = min(max(float(quality), 0.0), 1.0)
    return 2.0 * math.sqrt(q * (1.0 - q) / max(int(examples), 1))


def _final_score(h: Mapping[str, Any]) -> float | None:
    """The child's score at its last validation (its score scaled by final / best accuracy:
    the size and compute factor is the same for every validation of one child)."""
    curve, best, score = h.get("validation_curve") or [], h.get("validation_accuracy"), h.get(
        "score")
    if not curve or not best or score is None:
        return None
    return float(score) * float(curve[-1]) / float(best)


def _round(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def child_row(h: Mapping[str, Any], task: str, start_score: float | None,
              validation_examples: int) -> dict[str, Any]:
    """One child of the search history, classed (see the module docstring)."""
    score = h.get("score")
    row: dict[str, Any] = {"generation": h["generation"], "index": h["index"],
                           "parent_task": h["parent_task"], "score": _round(score),
                           "final_score": _round(_final_score(h)),
                           "validation_accuracy": _round(h.get("validation_accuracy"))}
    if h["parent_task"] == task and h.get("parent_score") is not None:
        bar = float(h["parent_score"])
        margin = (float(score) if score is not None else -math.inf) - bar
        row.update(kind="self", bar=_round(bar), margin=_round(margin))
        final = _final_score(h)
        row["final_margin"] = _round(None if final is None else final - bar)
        if h["improved"]:
            row["outcome"] = "kept"
        elif margin > -noise_margin(bar, validation_examples):
            row["outcome"] = "near"
        else:
            row["outcome"] = "below"
    else:
        row["kind"] = "restart"
        row["bar"] = _round(start_score)
        useful = start_score is None or (score is not None and float(score) >= start_score)
        row["outcome"] = "useful" if useful else "wasted"
    return row


def cycle_record(state: SearchState, start: Path | None, start_score: float | None,
                 validation_examples: int) -> dict[str, Any]:
    """One cycle: whether it kept a child, its children classed, the cause if stuck.
    `start`/`start_score`: the task's published path the cycle started from and its score
    (None for an onboard cycle); `validation_examples`: the size of the validation subset."""
    rows = [child_row(h, state.task, start_score, validation_examples) for h in state.history]
    best = state.best()
    children = {h["path"] for h in state.history if h["improved"]}
    kept = best is not None and best.path.hash in children and (
        start is None or best.path.hash != start.hash)
    selfs = [r for r in rows if r["kind"] == "self"]
    cause = None
    if not kept:
        if any(r["outcome"] == "near" for r in selfs):
            cause = "noise"
        elif not selfs:
            cause = "restarts"
        else:
            cause = "worse"
    inflation = None
    if start is not None:
        curve = start.metrics.get("validation_curve") or []
        if curve:
            inflation = max(curve) - curve[-1]
    return {"task": state.task, "cycle": state.cycle, "mode": state.mode, "kept": kept,
            "cause": cause, "children": len(rows), "self": len(selfs),
            "restarts": len(rows) - len(selfs), "start_score": _round(start_score),
            "start_inflation": _round(inflation),
            "end_score": _round(best.score if best is not None else None), "rows": rows}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def summarise(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Over the iterate cycles (onboard cycles always keep a child): the fraction that kept
    no child, the split of their causes, the children's split by origin and outcome, and the
    mean inflation of the bars the cycles started from."""
    iterate = [r for r in records if r["mode"] == "iterate"]
    stuck = [r for r in iterate if not r["kept"]]
    rows: Sequence[Mapping[str, Any]] = [row for r in iterate for row in r["rows"]]
    outcomes: dict[str, int] = {}
    for row in rows:
        key = f"{row['kind']}:{row['outcome']}"
        outcomes[key] = outcomes.get(key, 0) + 1
    inflations = [r["start_inflation"] for r in iterate if r["start_inflation"] is not None]
    final_would_pass = sum(1 for row in rows if row["kind"] == "self"
                           and row["outcome"] != "kept" and row.get("final_margin") is not None
                           and row["final_margin"] >= 0)
    return {
        "iterate_cycles": len(iterate), "stuck": len(stuck),
        "stuck_fraction": _share(len(stuck), len(iterate)),
        "causes": {c: sum(1 for r in stuck if r["cause"] == c) for c in CAUSES},
        "children": len(rows),
        "own_lineage_share": _share(sum(1 for row in rows if row["kind"] == "self"), len(rows)),
        "outcomes": dict(sorted(outcomes.items())),
        "mean_start_inflation": (round(sum(inflations) / len(inflations), 4)
                                 if inflations else None),
        "rejected_self_final_at_bar": final_would_pass,
    }
