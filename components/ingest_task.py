"""Stage 1: resolve the run's task (a spec, or the next one from the queue) and prepare it."""

from kfp.dsl import Artifact, Dataset, Output


def ingest_task(task_spec: str, mode: str, store_uri: str, data_dir: str, run_id: str,
                job_id: str, config_json: str, config_hash: str, task: Output[Dataset],
                info: Output[Artifact], default_data_dir: str = "",
                target: str = "cpu") -> str:
    """Prepare the task's splits as a Dataset (for the steps that read images) and its small
    task info (for the light steps); returns the task name.

    `task_spec` "next" takes the oldest pending entry of the store's queue, or, when the queue
    is empty, re-evolves the task with the most to gain (mu2net.steps.pick_task_to_iterate).
    """
    from mu2net import steps

    out = steps.ingest_step(task_spec=task_spec, mode=mode, store_uri=store_uri,
                            data_dir=data_dir, run_id=steps.resolve_run_id(run_id, job_id),
                            config_json=config_json, config_hash=config_hash,
                            task_dir=task.path, info_dir=info.path,
                            default_data_dir=default_data_dir, target=target)
    task.metadata.update(out)
    return out["task"]
