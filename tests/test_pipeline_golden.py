"""Golden compiled pipelines: any change to the wiring, placement or component code shows up
as a diff of tests/golden/*.yaml (SDK version and image tags stripped).

Regenerate after an intended change:  .venv/bin/python tests/test_pipeline_golden.py
"""

import difflib
import pathlib
import re
import sys
import tempfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
CASES = [("testing", "cpu"), ("gpu", "gpu")]


def normalized(config_name: str, target: str) -> str:
    """Compiled YAML with the SDK version and image tags removed."""
    sys.path.insert(0, str(ROOT))
    from kfp import compiler

    from pipelines.onboard_task import build_pipeline

    pipeline = build_pipeline(config_name, target, f"mu2net-{target}:TAG",
                              light_image="mu2net-cpu:TAG", code_version="TAG")
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "p.yaml"
        compiler.Compiler().compile(pipeline, str(out))
        docs = list(yaml.safe_load_all(out.read_text()))
    docs[0].pop("sdkVersion", None)
    for executor in docs[0]["deploymentSpec"]["executors"].values():
        image = executor["container"]["image"]
        executor["container"]["image"] = re.sub(r":[^/:]+$", "", image)
    return yaml.safe_dump_all(docs, sort_keys=True, width=100)


def golden_path(config_name: str, target: str) -> pathlib.Path:
    return GOLDEN / f"onboard-{config_name}-{target}.yaml"


@pytest.mark.parametrize("config_name, target", CASES)
def test_compiled_pipeline_matches_golden(config_name, target):
    path = golden_path(config_name, target)
    assert path.exists(), f"{path} is missing: run `python tests/test_pipeline_golden.py`"
    expected = path.read_text()
    actual = normalized(config_name, target)
    if list(yaml.safe_load_all(expected)) == list(yaml.safe_load_all(actual)):
        return
    diff = "".join(list(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                             str(path), "compiled"))[:80])
    pytest.fail(f"compiled pipeline differs from {path.name}; if intended, regenerate with "
                f"`python tests/test_pipeline_golden.py`:\n{diff}")


def test_golden_strips_versions():
    text = golden_path("gpu", "gpu").read_text()
    assert "sdkVersion" not in text and "image: mu2net-cpu:" not in text
    assert "image: mu2net-gpu\n" in text and "image: mu2net-cpu\n" in text


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for case in CASES:
        golden_path(*case).write_text(normalized(*case))
        print("wrote", golden_path(*case))
