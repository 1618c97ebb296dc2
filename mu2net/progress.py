"""Progress lines of local runs (`mu2net onboard|iterate|demo`): each step's own duration,
which ParallelFor child it is, and a bar with an ETA while a child trains.

kfp.local reports a step only as "Executing task 'X'" ... "Task 'X' finished with status S";
the children of one ParallelFor all run under the same name X, finish in any order, and a
finish line of a child can be lost to kfp's logger swapping. So a child is recognised by its
executor's own last line, which names its artifact folder (`.../for-loop-N-iteration-<i>/X/
executor_output.json`), and its duration is measured from its start. A step that trains
prints `[mu2net-progress] <label> <done>/<total>` after each validation (`emitter`), which
becomes a bar with an ETA, at most one line per `BAR_EVERY_S` per child.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable

MARK = "[mu2net-progress]"
BAR_EVERY_S = 10.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
_CHILD_DONE = re.compile(r"Wrote executor output file to \S*-iteration-(\d+)/([^/\s]+)/"
                         r"executor_output\.json")
_PROGRESS = re.compile(re.escape(MARK) + r" (.+?) (\d+)/(\d+)\s*$")


def emitter(label: str, stream: object = None) -> Callable[[int, int], None]:
    """A callback `(done, total)` that prints one machine-readable progress line (read back
    by `StepTimer` from the step's streamed output)."""
    def emit(done: int, total: int) -> None:
        out = stream or sys.stdout
        out.write(f"{MARK} {label} {done}/{total}\n")  # type: ignore[attr-defined]
        out.flush()  # type: ignore[attr-defined]
    return emit


def bar(done: int, total: int, elapsed: float, width: int = 20) -> str:
    """`[########------------] 2/5 40%, 12 s, ETA 18 s` (ETA: the elapsed pace so far)."""
    total = max(total, 1)
    done = min(max(done, 0), total)
    filled = round(width * done / total)
    eta = elapsed / done * (total - done) if done else None
    return (f"[{'#' * filled}{'-' * (width - filled)}] {done}/{total} "
            f"{100 * done / total:.0f}%, {duration(elapsed)}"
            + (f", ETA {duration(eta)}" if eta is not None and done < total else ""))


def duration(seconds: float) -> str:
    """`4.2 s`, `3 min 05 s`, `1 h 02 min`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class StepTimer:
    """Turns kfp.local's log lines into progress lines (`feed` returns them)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.starts: dict[str, list[float]] = {}
        self.children_done: dict[str, int] = {}  # finish lines still to swallow, per name
        # label -> (time base, last printed, last done)
        self.bars: dict[str, tuple[float, float, int]] = {}

    def feed(self, line: str) -> list[str]:
        line = _ANSI.sub("", line)
        now = self.clock()
        out = []
        for m in _START.finditer(line):
            self.starts.setdefault(m.group(1), []).append(now)
        for m in _CHILD_DONE.finditer(line):
            name, child = m.group(2), int(m.group(1))
            self.children_done[name] = self.children_done.get(name, 0) + 1
            out.append(f"{name} child {child + 1} success ({duration(self._took(name, now))})")
        for m in _FINISHED.finditer(line):
            name, status = m.group(1), m.group(2).lower()
            if status == "success" and self.children_done.get(name, 0) > 0:
                self.children_done[name] -= 1  # already reported by its executor's line
                continue
            out.append(f"{name} {status} ({duration(self._took(name, now))})")
        m = _PROGRESS.search(line)
        if m:
            label, done, total = m.group(1), int(m.group(2)), int(m.group(3))
            base, last, before = self.bars.get(label, (0.0, 0.0, total))
            if done <= before:  # a new step (or a retry): time base, the newest running start
                running = [t for times in self.starts.values() for t in times]
                base, last = max(running, default=now), -BAR_EVERY_S
            self.bars[label] = (base, last, done)
            if now - last >= BAR_EVERY_S and done < total:
                self.bars[label] = (base, now, done)
                out.append(f"{label} {bar(done, total, now - base)}")
        return out

    def _took(self, name: str, now: float) -> float:
        starts = self.starts.get(name)
        return now - starts.pop(0) if starts else 0.0
