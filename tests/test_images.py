"""No Docker engine runs here, so the images are checked as text: the Dockerfiles, setup.cfg,
images/requirements.txt, the build scripts and the images compiled pipelines reference must
agree (versions, names, tags, non-root user, no credentials)."""

import argparse
import configparser
import pathlib
import re
import subprocess

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from components.placement import IMAGE_UID
from mu2net import version as version_module
from mu2net.version import (
    baked_version,
    code_version,
    entry_point_version,
    image_ref,
    package_version,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
IMAGES = ROOT / "images"
KINDS = ("cpu", "gpu", "tpu")


def install_requires() -> dict[str, Requirement]:
    """name -> requirement of setup.cfg (ranges, markers kept)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out = {}
    for line in cfg["options"]["install_requires"].strip().splitlines():
        if line.strip():
            req = Requirement(line)
            out[canonicalize_name(req.name)] = req
    return out


def lock() -> dict[str, str]:
    """name -> exact version of images/requirements.txt (the lock of the images and CI)."""
    out = {}
    for line in (IMAGES / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.strip().partition("==")
            assert sep and re.match(r"^\d+(\.\d+)*$", version), f"not an exact pin: {line!r}"
            out[canonicalize_name(name)] = version
    return out


def allowed(name: str, version: str) -> bool:
    """Whether setup.cfg's range for `name` admits `version`."""
    return install_requires()[name].specifier.contains(version, prereleases=True)


def dockerfile(kind: str) -> str:
    return (IMAGES / f"{kind}.Dockerfile").read_text()


def arg_default(text: str, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", text, re.M)
    assert match, f"ARG {name}=... missing"
    return match.group(1)


@pytest.mark.parametrize("kind", KINDS)
def test_dockerfile_pins_match_setup_cfg(kind):
    text = dockerfile(kind)
    kfp, tf_version = arg_default(text, "KFP_VERSION"), arg_default(text, "TF_VERSION")
    assert allowed("kfp", kfp) and allowed("kfp-kubernetes", kfp)
    assert allowed("tensorflow-cpu", tf_version) and allowed("tensorflow", tf_version)
    assert re.match(r"^\d+\.\d+\.\d+$", kfp) and re.match(r"^\d+\.\d+\.\d+$", tf_version)
    assert '"kfp==${KFP_VERSION}" "kfp-kubernetes==${KFP_VERSION}"' in text
    tf = {"cpu": '"tensorflow-cpu==${TF_VERSION}"', "gpu": '"tensorflow[and-cuda]==${TF_VERSION}"',
          "tpu": '"tensorflow-cpu==${TF_VERSION}"'}[kind]
    assert tf in text
    assert "-r /tmp/requirements.txt" in text
    # the project's wheel, without re-resolving its dependencies
    assert re.search(r"pip install --no-deps /tmp/wheels/mu2net-\*\.whl", text)
    assert "COPY dist/mu2net-*.whl" in text
    # the Python of the image is the one setup.cfg targets; any such base can replace it
    assert arg_default(text, "BASE") == "python:3.11-slim"
    assert re.search(r"^FROM \$\{BASE\}$", text, re.M)
    # optional offline install from a wheelhouse, mounted for that one step only
    assert re.search(r"^ARG WHEELHOUSE=$", text, re.M)
    assert "RUN --mount=type=bind,source=dist,target=/tmp/dist" in text
    assert 'PIP_NO_INDEX=1 PIP_FIND_LINKS="/tmp/dist/${WHEELHOUSE}"' in text
    backend = "jax" if kind == "tpu" else "tensorflow"
    assert f"KERAS_BACKEND={backend}" in text
    if kind == "tpu":
        jax = arg_default(text, "JAX_VERSION")
        assert '"jax[tpu]==${JAX_VERSION}"' in text and re.match(r"^\d+\.\d+\.\d+$", jax)


def test_requirements_lock_setup_cfg_minus_what_dockerfiles_pin():
    """images/requirements.txt pins exactly what setup.cfg requires, minus what the Dockerfiles
    pin themselves, each version inside setup.cfg's range."""
    pinned = lock()
    expected = set(install_requires()) - {"kfp", "kfp-kubernetes", "tensorflow-cpu",
                                          "tensorflow"}
    assert set(pinned) == expected
    assert [n for n, v in pinned.items() if not allowed(n, v)] == []


def test_setup_cfg_uses_ranges_and_installs_tensorflow_on_arm64():
    reqs = install_requires()
    exact = [str(r) for r in reqs.values() if any(s.operator == "==" for s in r.specifier)]
    assert exact == []
    machines = {"x86_64": "tensorflow-cpu", "AMD64": "tensorflow-cpu",
                "aarch64": "tensorflow", "arm64": "tensorflow"}  # Linux / Windows / macOS
    for machine, wanted in machines.items():
        chosen = [n for n in ("tensorflow-cpu", "tensorflow")
                  if reqs[n].marker.evaluate({"platform_machine": machine})]
        assert chosen == [wanted], machine


@pytest.mark.parametrize("kind", KINDS)
def test_images_run_as_non_root_without_credentials(kind):
    text = dockerfile(kind)
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert f"--uid {IMAGE_UID}" in text
    # the launcher's local artifact prefixes are writable by that user
    assert f"chown {IMAGE_UID}:{IMAGE_UID} /gcs /minio /s3" in text
    for bad in ("GOOGLE_APPLICATION_CREDENTIALS", "SECRET", "TOKEN", "PASSWORD",
                "ACCESS_KEY", "PRIVATE_KEY", ".json", "gcloud auth"):
        assert bad not in text.upper() if bad.isupper() else bad not in text, bad
    copies = re.findall(r"^COPY (\S+)", text, re.M)
    assert copies == ["images/requirements.txt", "dist/mu2net-*.whl"]
    assert arg_default(text, "CODE_VERSION") == "dev"
    assert "MU2NET_CODE_VERSION=${CODE_VERSION}" in text


def test_build_context_is_whitelisted():
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines == ["*", "!images/requirements.txt", "!dist/*.whl", "!dist/wheelhouse/*.whl"]


def test_build_script_tags_with_the_code_version():
    script = (IMAGES / "build.sh").read_text()
    subprocess.run(["bash", "-n", str(IMAGES / "build.sh")], check=True)
    assert '-m mu2net.version' in script
    assert 'mu2net-${kind}:${TAG}' in script
    assert '-f "images/${kind}.Dockerfile"' in script
    assert '"CODE_VERSION=${TAG}"' in script
    cloud = yaml.safe_load((IMAGES / "cloudbuild.yaml").read_text())
    built = {step["id"]: step for step in cloud["steps"] if step["id"] in KINDS}
    assert sorted(built) == sorted(KINDS)
    for kind, step in built.items():
        args = step["args"]
        assert args[args.index("-f") + 1] == f"images/{kind}.Dockerfile"
        assert args[args.index("-t") + 1] == f"${{_REGISTRY}}/mu2net-{kind}:${{_TAG}}"
        assert "CODE_VERSION=${_TAG}" in args
    assert cloud["images"] == [f"${{_REGISTRY}}/mu2net-{k}:${{_TAG}}" for k in KINDS]


def test_code_version_is_a_docker_tag():
    version = entry_point_version()
    assert re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", version)
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "mu2net.version"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == version  # what build.sh tags with


def test_code_version_from_the_image_environment(monkeypatch):
    monkeypatch.setenv("MU2NET_CODE_VERSION", "v1.2.3-4-gabc/def")
    assert baked_version() == "v1.2.3-4-gabc/def"  # read by entry points only
    assert code_version(baked=baked_version()) == "v1.2.3-4-gabc-def"
    assert code_version() != "v1.2.3-4-gabc-def"  # the library never reads the environment
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "mu2net.version"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "v1.2.3-4-gabc-def"  # the entry point does


@pytest.mark.parametrize("described, expected", [
    ("1234abcd5678", "{pkg}-g1234abcd5678"),  # no tag, a hash that starts with digits
    ("1234abcd5678-dirty", "{pkg}-g1234abcd5678-dirty"),
    ("abcd12345678", "{pkg}-gabcd12345678"),
    ("v0.2.0", "v0.2.0"),
    ("0.2.0-3-g1a2b3c4d5e6f-dirty", "0.2.0-3-g1a2b3c4d5e6f-dirty"),
])
def test_code_version_tells_a_bare_hash_from_a_release_tag(monkeypatch, tmp_path, described,
                                                           expected):
    (tmp_path / ".git").mkdir()
    monkeypatch.setattr(version_module, "_git_describe", lambda repo: described)
    assert code_version(str(tmp_path)) == expected.format(pkg=package_version())


@pytest.mark.parametrize("target", KINDS)
def test_compiled_pipelines_reference_the_built_images(target, tmp_path):
    from mu2net.commands import compile_to

    registry = "us-central1-docker.pkg.dev/proj/mu2net"
    args = argparse.Namespace(config="testing", target=target, out=str(tmp_path), image=None,
                              light_image=None, registry=registry, code_version="",
                              store="gs://b/store", data_dir=None)
    spec = next(yaml.safe_load_all(pathlib.Path(compile_to(args)).read_text()))
    images = {}
    for name, executor in spec["deploymentSpec"]["executors"].items():
        images.setdefault(executor["container"]["image"], []).append(name)
    tag = entry_point_version()
    train = image_ref(registry, target, tag)
    light = image_ref(registry, "cpu", tag)
    assert set(images) == {train, light}
    pool_steps = ("exec-train-child", "exec-close-and-commit")  # commit: the test inference
    assert all(n.startswith(pool_steps) for n in images[train]) or train == light
    for image in images:
        kind = re.search(r"/mu2net-(\w+):", image).group(1)
        assert (IMAGES / f"{kind}.Dockerfile").exists()
        assert image.endswith(":" + tag)
    # the commit records the same code version
    commit = spec["root"]["dag"]["tasks"]["close-and-commit"]["inputs"]["parameters"]
    assert commit["code_version"]["runtimeValue"]["constant"] == tag


def test_gpu_image_finds_the_driver_gke_mounts():
    # GKE mounts the NVIDIA driver under /usr/local/nvidia and sets no environment variables
    env = re.search(r"^ENV (.*?)(?=^\S)", dockerfile("gpu"), re.M | re.S).group(1)
    assert "LD_LIBRARY_PATH=/usr/local/nvidia/lib64" in env
    assert "/usr/local/nvidia/bin" in env


def test_cloud_build_uses_buildkit_for_every_docker_step():
    # every Dockerfile uses `RUN --mount`, which the classic builder refuses
    assert all("RUN --mount" in (IMAGES / f"{k}.Dockerfile").read_text() for k in KINDS)
    cloud = yaml.safe_load((IMAGES / "cloudbuild.yaml").read_text())
    docker = [s for s in cloud["steps"] if s["name"].startswith("gcr.io/cloud-builders/docker")]
    assert len(docker) == len(KINDS)
    for step in docker:
        assert "DOCKER_BUILDKIT=1" in step.get("env", []), step["id"]
    # pushed to the cluster's region (manifests/gke/setup.sh creates the repository there)
    assert cloud["substitutions"]["_REGISTRY"].startswith("us-central1-docker.pkg.dev/")


@pytest.mark.parametrize("command", ["compile", "submit", "schedule"])
def test_an_empty_registry_is_refused_before_compiling(command, tmp_path, capsys):
    from mu2net.cli import main

    flags = {"compile": ["--out", str(tmp_path)], "submit": ["--host", "http://127.0.0.1:9"],
             "schedule": ["--host", "http://127.0.0.1:9", "--cron", "@daily"]}[command]
    assert main([command, "--config", "testing", "--registry", "", "--store", "gs://b/s",
                 *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--registry ''" in err[0] and "no cluster can pull" in err[0]
    assert not list(tmp_path.iterdir())  # nothing compiled
