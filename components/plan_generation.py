"""Stage 3 (per generation): sample the generation's data hparams and its K child specs."""

from kfp.dsl import Artifact, Input, Output


def plan_generation(state: Input[Artifact], generation: int, store_uri: str, config_json: str,
                    config_hash: str, plan: Output[Artifact]) -> list[str]:
    """Returns the child specs (JSON) the ParallelFor fans out over."""
    from mu2net import steps

    return steps.plan_step(state_dir=state.path, generation=generation, store_uri=store_uri,
                           config_json=config_json, config_hash=config_hash,
                           plan_dir=plan.path)
