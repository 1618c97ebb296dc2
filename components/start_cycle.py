"""Stage 2: pin the store's head as the cycle's base version and build the search state."""

from kfp.dsl import Artifact, Input, Output


def start_cycle(info: Input[Artifact], store_uri: str, seed: int, run_id: str, job_id: str,
                config_json: str, config_hash: str, state: Output[Artifact],
                target: str = "cpu") -> int:
    """Write the initial search state; returns the pinned base version every later step reads."""
    from mu2net import steps

    out = steps.start_step(info_dir=info.path, store_uri=store_uri, seed=seed,
                           run_id=steps.resolve_run_id(run_id, job_id), config_json=config_json,
                           config_hash=config_hash, state_dir=state.path, target=target)
    state.metadata.update(out)
    return out["base_version"]
