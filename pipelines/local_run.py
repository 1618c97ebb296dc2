"""Run the onboarding pipeline on this machine through `kfp.local` (the embedded default).

The same compiled components run as on a cluster, each as a subprocess of this Python
(`SubprocessRunner(use_venv=False)`: the project must be installed in the running environment).
Kubernetes settings (node pools, retries' backoff aside) have no effect locally and their
warnings are silenced. kfp's own log lines go to a log file per run; `progress` receives one
short line per finished step with its own duration (a ParallelFor child named by its index)
and bars with an ETA while children train (`mu2net.progress`; called while stdout is
redirected: write to a stream captured beforehand, not with print).
"""

import builtins
import contextlib
import io
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _LogStream(io.TextIOBase):
    """Writes everything to a log file and hands each complete line to `on_line`. The
    ParallelFor children of kfp.local write from several threads at once, and a text file is
    not safe for concurrent writes (seen: NUL bytes and torn characters in the log), so every
    write holds a lock."""

    def __init__(self, log: io.TextIOBase, on_line: Callable[[str], None],
                 echo: io.TextIOBase | None) -> None:
        self.log, self.on_line, self.echo = log, on_line, echo
        self._buffer = ""
        self._lock = threading.RLock()  # on_line may print back into this stream

    def write(self, text: str) -> int:
        with self._lock:
            self.log.write(text)
            if self.echo is not None:
                self.echo.write(text)
            self._buffer += text
            while "\n" in self._buffer:
                line, self._buffer = self._buffer.split("\n", 1)
                self.on_line(line)  # parallel tasks can interleave output within one line
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self.log.flush()


def run_local(*, config_name: str, task_spec: str, store_uri: str, workdir: str,
              mode: str = "onboard", seed: int = 0, data_dir: str = "", run_id: str = "",
              image: str | None = None, code_version: str = "",
              progress: Callable[[str], None] | None = None, verbose: bool = False,
              runner: Any = None) -> dict[str, Any]:
    """Run one cycle of one task; returns {"line", "seconds", "log", "pipeline_root"}.

    `runner`: the kfp.local runner; default `SubprocessRunner(use_venv=False)`. A
    `kfp.local.DockerRunner` runs every step in `image` (tests/test_containers.py).

    Raises RunError naming the failing step's exception and the log file.
    """
    from kfp import local

    from mu2net.progress import StepTimer

    from .onboard_task import build_pipeline

    workdir = os.path.abspath(workdir)
    root = os.path.join(workdir, "pipeline_root")
    logs = os.path.join(workdir, "logs")
    os.makedirs(root, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", task_spec)[:60]
    log_path = os.path.join(logs, f"{stamp}-{safe}.log")
    started = time.monotonic()
    timer = StepTimer()

    def on_line(line: str) -> None:
        """Each step's own duration, which child it is, bars of training children."""
        for text in timer.feed(line):
            if progress is not None:
                progress(text)

    pipeline = build_pipeline(config_name, "cpu", image=image, code_version=code_version,
                              retry_backoff="0s")
    # kfp.local swaps builtins.print and the root logger's handlers from several threads at
    # once (ParallelFor), which can leave them swapped (pointing at this run's log stream):
    # put the real ones back afterwards.
    real_print = builtins.print
    root_logger = logging.getLogger()
    real_handlers, real_level = root_logger.handlers[:], root_logger.level
    with open(log_path, "w") as log, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k8s settings ignored locally; base image not python
        stream = _LogStream(log, on_line, None if not verbose else _real_stdout())
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            local.init(runner=runner or local.SubprocessRunner(use_venv=False),
                       pipeline_root=root,
                       enable_caching=False, raise_on_error=True)
            try:
                run = pipeline(task_spec=task_spec, mode=mode, store_uri=store_uri, seed=seed,
                         data_dir=data_dir, run_id=run_id)
            except Exception as exc:
                failure = exc
            else:
                failure = None
            finally:
                builtins.print = real_print
                root_logger.handlers[:] = real_handlers
                root_logger.setLevel(real_level)
    if failure is not None:
        from mu2net.errors import RunError

        raise RunError(f"{task_spec}: {_step_error(log_path) or failure} (log: {log_path})"
                       ) from failure
    return {"line": str(run.output), "seconds": time.monotonic() - started, "log": log_path,
            "pipeline_root": root}


def _real_stdout() -> Any:
    import sys

    return sys.__stdout__


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")
_FAILED_TASK = re.compile(r"Task '([^']+)' finished with status FAILURE")


def _step_error(log_path: str) -> str:
    """`<step>: <ExceptionClass>: <message>` of the last step that failed, from the log."""
    with open(log_path) as fh:
        lines = [_ANSI.sub("", line.rstrip("\n")) for line in fh]
    step, error = "", ""
    for line in lines:
        match = _ERROR_LINE.match(line)
        if match and match.group(1) != "RuntimeError":
            error = f"{match.group(1)}: {match.group(2)}"
        failed = _FAILED_TASK.search(line)
        if failed and not step:
            step = failed.group(1)
    if not error:
        return ""
    return f"step {step} failed: {error}" if step else error
