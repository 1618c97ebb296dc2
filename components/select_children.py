"""Stage 5 (per generation): accept improved children into the population, prune it."""

from kfp.dsl import Artifact, Input, Metrics, Model, Output


def select_children(plan: Input[Artifact], results: Input[list[Model]], store_uri: str,
                    config_json: str, config_hash: str, state: Output[Artifact],
                    metrics: Output[Metrics], target: str = "cpu") -> float:
    """Writes the next search state (the population's new blobs by hash); returns the best
    score."""
    from mu2net import steps

    out = steps.select_step(plan_dir=plan.path, result_dirs=[r.path for r in results],
                            store_uri=store_uri, config_json=config_json,
                            config_hash=config_hash, state_dir=state.path, target=target)
    for name, value in out["metrics"].items():
        metrics.log_metric(name, value)
    return out["best_score"]
