"""The model code and the training step run unchanged on Keras' JAX backend (the TPU path).

The backend is fixed when Keras is first imported, so the JAX side runs in a subprocess with
KERAS_BACKEND=jax; its logits are compared with the TensorFlow backend's in this process.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    import keras
    import numpy as np
    from mu2net_helpers import digits_task, probe_logits, root_system, tiny_config
    from mu2net.search import plan_generation, start_cycle, train_child

    assert keras.backend.backend() == {backend!r}, keras.backend.backend()
    out_dir = sys.argv[1]
    config = tiny_config(examples_between_validations=64)
    system, store = root_system(config, os.path.join(out_dir, "store"))
    logits = probe_logits(config)
    task = digits_task("digits", limit=300)
    state = start_cycle(system, task.info, config, seed=1, run_id="jax")
    state, specs = plan_generation(state, system, config)
    result = train_child(specs[0], state, system, task, config, store,
                         os.path.join(out_dir, "child"), execution={execution!r})
    print("RESULT " + json.dumps({{
        "logits": logits.tolist(), "improved": result.improved,
        "curve": result.metrics["validation_curve"],
        "losses": result.metrics["train_losses"],
        "new": sorted(result.new_blobs), "trainable": specs[0].trainable,
        "reused": [s.source.blob for s in specs[0].plan if s.action == "reuse"],
        "components": [c.blob for c in result.path.components]}}))
""")


def run_backend(backend: str, out_dir: Path, execution: str = "auto") -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "JAX_PLATFORMS": "cpu"}
    code = SCRIPT.format(tests=str(ROOT / "tests"), backend=backend, execution=execution)
    proc = subprocess.run([sys.executable, "-c", code, str(out_dir)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    pytest.importorskip("jax")
    return run_backend("jax", tmp_path_factory.mktemp("jax"), execution="graph")


def test_forward_pass_on_jax_matches_tensorflow(jax_run):
    import keras

    assert keras.backend.backend() == "tensorflow"
    from mu2net_helpers import probe_logits, tiny_config

    tf_logits = probe_logits(tiny_config())
    assert np.abs(tf_logits).max() > 0.1
    np.testing.assert_allclose(np.array(jax_run["logits"]), tf_logits, rtol=1e-4, atol=1e-4)


def test_train_step_on_jax_updates_only_trainable_components(jax_run):
    assert len(jax_run["curve"]) == 2 and all(0 <= q <= 1 for q in jax_run["curve"])
    assert all(loss is not None for loss in jax_run["losses"])
    assert jax_run["improved"]  # a new task's first child is always retained
    assert len(jax_run["new"]) == len(jax_run["trainable"]) >= 2  # encoder_norm + head
    # reused (frozen) components are the very same blobs in the child's path
    assert set(jax_run["reused"]) <= set(jax_run["components"])
    assert set(jax_run["new"]) <= set(jax_run["components"])
