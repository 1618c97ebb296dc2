"""Stage 4 (per child, on the target node pool): train one child path."""

from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def train_child(spec: str, plan: Input[Artifact], task: Input[Dataset], store_uri: str,
                config_json: str, config_hash: str, result: Output[Model],
                tensorboard: Output[Artifact], metrics: Output[Metrics],
                target: str = "cpu") -> float:
    """Writes the child's result (Model; its new component blobs are staged in the store) and
    its TensorBoard events; returns its score."""
    import os

    from mu2net import steps
    from mu2net.distribute import ENV_VAR

    out = steps.train_step(spec_json=spec, plan_dir=plan.path, task_dir=task.path,
                           store_uri=store_uri, config_json=config_json,
                           config_hash=config_hash, result_dir=result.path,
                           tensorboard_dir=tensorboard.path,
                           data_parallel=os.environ.get(ENV_VAR) or None, target=target)
    for name, value in out["metrics"].items():
        metrics.log_metric(name, value)
    result.metadata.update(out["metadata"])
    return out["score"]
