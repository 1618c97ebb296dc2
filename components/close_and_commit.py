"""Stage 6: close the cycle (best path, test accuracy) and commit it as a new system version."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def close_and_commit(state: Input[Artifact], task: Input[Dataset], store_uri: str,
                     code_version: str, config_json: str, config_hash: str,
                     extension: Output[Model], metrics: Output[Metrics],
                     target: str = "cpu") -> int:
    """Commit is idempotent per run id, so a retry after a crash creates no second version.
    Returns the committed version number."""
    import os

    from mu2net import steps

    out = steps.commit_step(state_dir=state.path, task_dir=task.path, store_uri=store_uri,
                            code_version=code_version, config_json=config_json,
                            config_hash=config_hash, extension_dir=extension.path,
                            fault_marker=os.environ.get(steps.FAULT_ENV, ""), target=target)
    for name, value in out["metrics"].items():
        metrics.log_metric(name, value)
    extension.metadata.update(out["metadata"])
    return out["version"]
