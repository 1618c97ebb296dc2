"""What a run works on: the store's task queue first, else the task with the most to gain
from one more cycle (the re-evolution rule), and the source a task was ingested from; then
the requested task prepared, or its queue entry failed when the task itself is bad."""

from __future__ import annotations

from typing import Any

from mu2net.errors import ConfigError, SchemaError, TaskError
from mu2net.schema import check_mode

NEXT = "next"  # the task_spec that asks for the queue's next entry



def gain_ranking(view: Any, store: Any = None) -> list[tuple[float, str]]:
    """Tasks by expected gain of one more cycle, best first.

    The rule: gain = (1 - validation accuracy) / (1 + cycles so far). The error left is the
    headroom; dividing by the cycles already spent favours tasks the search has explored
    least (each cycle has diminishing returns). Ties go to the task name, alphabetically.
    The cycle count is the one each path records (`metrics["num_cycles"]`, set when its cycle
    closed), so ranking reads one version, never the history; with the `store`, the cycles
    that kept the path since (published nothing, `store.kept_cycles`) count too.
    """
    ranked = []
    for task, path in view.paths.items():
        accuracy = float(path.metrics.get("validation_accuracy", 0.0))
        cycles = int(path.metrics.get("num_cycles", 1))
        if store is not None:
            cycles += store.kept_cycles(view, task)
        ranked.append(((1.0 - accuracy) / (1 + cycles), task))
    return sorted(ranked, key=lambda item: (-item[0], item[1]))


def pick_task_to_iterate(store: Any) -> str | None:
    """The task with the most to gain (see `gain_ranking`), or None if the store has none."""
    head = store.head()
    if head is None:
        return None
    ranking = gain_ranking(store.load_system(head), store)
    return ranking[0][1] if ranking else None


def task_source(store: Any, name: str) -> str:
    """The source spec a task was ingested from (recorded by every ingest step)."""
    sources = sorted({info.source for info in store.task_infos(name)})
    if not sources:
        raise TaskError(f"task {name!r} has no recorded source in store {store.uri!r}: "
                        "iterate it with its source spec instead of its name")
    if len(sources) > 1:
        raise TaskError(f"task {name!r} was ingested from several sources {sources}: iterate "
                        "it with the source spec to use")
    return sources[0]


def resolve_request(store: Any, task_spec: str, mode: str, run_id: str, *,
                    deadline_s: float | None = None) -> dict[str, Any]:
    """What this run works on: {"spec", "mode", "name", "queue_entry", "data_dir"}.

    * "next": the oldest pending queue entry (or the one this run took, on a retry; the
      entry records `deadline_s` from now as the run's deadline), else the task with the
      most to gain (mode iterate);
    * mode iterate with a task name of the store: that task, from its recorded source;
    * anything else: a source spec, as given.

    "data_dir" is the data folder recorded with the request's queue entry, else with its
    task (`store.task_data_dir`, the folder its last ingest read), else ''; `effective_data_dir`
    decides between it and the run's parameter.
    """
    check_mode(mode)
    spec = (task_spec or "").strip()
    if not spec:
        raise TaskError(f"task_spec is empty: pass a source spec, a task name or {NEXT!r}")
    if spec == NEXT:
        # A retried step must not take a second task: reuse (or re-fail) this run's entry.
        for held in store.queue():
            if held.run_id == run_id and held.state == "failed":
                raise TaskError(f"queue entry {held.id} ({held.spec}) already failed in run "
                                f"{run_id}: {held.error}")
        entry = store.take_next(run_id, deadline_s=deadline_s)  # a retry: the one it holds
        if entry is not None:
            try:
                if entry.spec.strip() == NEXT:
                    raise TaskError(f"queue entry {entry.id} has spec {NEXT!r}: a queue entry "
                                    "must name a task source or, to iterate, a task")
                resolved = resolve_request(store, entry.spec, entry.mode, run_id)
            except (TaskError, ConfigError, SchemaError) as exc:
                store.finish(entry.id, error=f"{type(exc).__name__}: {exc}")
                raise
            recorded = str(entry.extra.get("data_dir", "")) or resolved["data_dir"]
            return {**resolved, "queue_entry": entry.id, "data_dir": recorded}
        name = pick_task_to_iterate(store)
        if name is None:
            raise TaskError(f"nothing to do: the queue of store {store.uri!r} is empty and the "
                            "store holds no task to re-evolve")
        return {"spec": task_source(store, name), "mode": "iterate", "name": name,
                "queue_entry": "", "data_dir": store.task_data_dir(name)}
    if mode == "iterate" and ":" not in spec:
        return {"spec": task_source(store, spec), "mode": "iterate", "name": spec,
                "queue_entry": "", "data_dir": store.task_data_dir(spec)}
    return {"spec": spec, "mode": mode, "name": None, "queue_entry": "", "data_dir": ""}


def effective_data_dir(run_data_dir: str, recorded: str, compiled_default: str) -> str:
    """Where this run's task sources read their data. Precedence:

    1. the run's `data_dir` parameter, when set and not just the compiled default (an
       explicit choice for this run: data moved, or a one-off source);
    2. the folder recorded with the queue entry (`queue add --data-dir`), else with the
       task (its last ingest's folder): a scheduled run or a re-evolve reads a task where
       it was added or last found, whatever folder the pipeline was compiled with;
    3. the compiled default (`mu2net compile --data-dir`, the run form's default).

    A run parameter equal to the compiled default counts as the default (KFP passes the
    default when a run leaves the field as shown); '' everywhere means TFDS's own default.
    """
    run_data_dir = (run_data_dir or "").strip()
    if run_data_dir and run_data_dir != (compiled_default or "").strip():
        return run_data_dir
    return (recorded or "").strip() or (compiled_default or "").strip() or run_data_dir


def ingest_request(store: Any, request: dict[str, Any], task_dir: str,
                   data_dir: str | None, *, max_image_size: int | None = None) -> Any:
    """Prepare the requested task under `task_dir` (images larger than `max_image_size`
    shrunk to it) and record its metadata, and the data folder it was read from, in the
    store. A bad task (unreadable data, or a mode that does not fit the system) marks its
    queue entry failed, with the error, before raising: retrying the run cannot help it."""
    from mu2net.tasks.ingest import check_onboarding, ingest

    try:
        info = ingest(request["spec"], task_dir, data_dir=data_dir, name=request["name"],
                      max_image_size=max_image_size)
        head = store.head()
        check_onboarding(info.name, store.load_system(head) if head is not None else None,
                         request["mode"])
    except (TaskError, SchemaError) as exc:
        if request["queue_entry"]:
            store.finish(request["queue_entry"], error=f"{type(exc).__name__}: {exc}")
        raise
    store.put_task_info(info)
    if data_dir:
        store.put_task_data_dir(info.name, data_dir)
    return info


# === adding to and editing the queue ========================================================


def entry_task(spec: str, mode: str) -> str:
    """The task name a queue entry works on: an iterate entry may name the task itself."""
    if mode == "iterate" and ":" not in spec:
        return spec
    from mu2net.tasks.sources import parse_spec

    return parse_spec(spec).default_name()


def check_new_entry(store: Any, spec: str, mode: str) -> None:
    """Refuse an entry that a run could only fail on or that repeats a waiting one.

    * `onboard` of a task the head already has is refused, not converted to an iterate entry:
      an iterate entry spends a whole search cycle (up to tens of accelerator-hours at the gpu
      config) that nobody asked for, while the refusal costs one command
      (`--mode iterate`) to say so;
    * `iterate` of a task that is neither in the head nor waiting to be onboarded is refused;
    * an entry for a task that already has a pending entry of the same mode is refused as a
      duplicate, and an onboard also while one is running (the second would fail at ingest).
    """
    task = entry_task(spec, mode)
    head = store.head()
    tasks = store.read_version(head).tasks if head is not None else {}
    waiting = [e for e in store.queue() if e.state in ("pending", "running")
               and _same_task(e, task)]
    if mode == "onboard" and task in tasks:
        raise TaskError(f"task {task!r} is already onboarded (system version {head}): queue "
                        f"another search cycle with `mu2net queue add {task} --mode iterate`")
    if mode == "iterate" and task not in tasks and not any(e.mode == "onboard"
                                                           for e in waiting):
        raise TaskError(f"task {task!r} is not in system version {head} and not queued: "
                        f"queue its source with --mode onboard first")
    for e in waiting:  # a running iterate may be followed by another cycle; an onboard not
        if e.mode == mode and (e.state == "pending" or mode == "onboard"):
            raise TaskError(f"task {task!r} already has a {e.state} {e.mode} entry {e.id} "
                            f"({e.spec}): remove it first (`mu2net queue remove {e.id}`)")


def _same_task(entry: Any, task: str) -> bool:
    try:
        return entry_task(entry.spec, entry.mode) == task
    except (TaskError, ConfigError, SchemaError):  # a bad entry names no task
        return False


def entries_to_remove(store: Any, target: str) -> list[Any]:
    """The entries `queue remove ID|TASK` deletes: the entry with that id, else every pending
    or failed entry of that task."""
    entries = store.queue()
    by_id = [e for e in entries if e.id == target]
    if by_id:
        return by_id
    of_task = [e for e in entries if e.state in ("pending", "failed") and _same_task(e, target)]
    if not of_task:
        raise TaskError(f"no queue entry {target!r} and no pending or failed entry of a task "
                        f"{target!r}; entries: {[e.id for e in entries][:20]}")
    return of_task
