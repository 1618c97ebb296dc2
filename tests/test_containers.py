"""The onboarding pipeline inside its container image: kfp.local's DockerRunner on podman.

`make test-containers` installs the runtime (scripts/install_container_runtime.sh --service:
podman's Docker-compatible API on a unix socket), builds the CPU image with no registry
(`images/build.sh --local --tag localhost/mu2net-cpu:test`) and runs this file with
DOCKER_HOST pointing at the socket. Every component then runs in that image, as uid 1000, with
its real entrypoint (the `python3 -m kfp.dsl.executor_main` command kfp compiles), without
network; the store is a bind-mounted folder at the same path inside and outside, so store URIs
are the same for both runners. Two tasks at the `testing` config must commit exactly what the
subprocess runner commits for the same seeds.

Marked `containers`: the fast suite (`make test`) deselects it. Run on its own, it skips
when no container API answers or the image is missing, unless MU2NET_CONTAINER_TESTS=1 (set
by `make test-containers`), which turns those skips into failures.

podman and kfp.local's auto-removal: kfp.local (2.17.3, `docker_task_handler.
run_docker_container`) starts each container with `auto_remove=True`, then streams its logs
and asks for its exit status. Both race the removal: once the container has exited, podman
may already have removed it. Podman answers that with 500 on some versions (docker-py raises
`APIError`, which kfp does not catch: the run crashes) and 404 on others (podman 4.3.1 here:
kfp catches `NotFound` and reports exit status 0, so a failed step counts as a success; with
docker-py 7.2, a step that prints nothing in its first seconds already loses the race,
because podman's follow-logs request answers only at the first output and docker-py then
inspects the container). `auto_remove` cannot be turned off through DockerRunner's run
arguments (kfp passes it itself). `keep_exit_status` replaces kfp.local's
`run_docker_container` for these tests: the container is created without auto-removal, its
logs are streamed, its real exit status is read, and only then is it removed. No timing
assumption remains, whatever the engine answers for a vanished container.
"""

import os
import shutil
import time

import pytest

from mu2net.config import get_config
from mu2net.report import status_dict
from mu2net.store import open_store

pytestmark = pytest.mark.containers

IMAGE = os.environ.get("MU2NET_TEST_IMAGE", "localhost/mu2net-cpu:test")
UID = 1000  # components.placement.IMAGE_UID
CONFIG = "testing"
TASKS = (("demo:digits", "digits", "run-digits"), ("demo:mnist_parity", "mnist_parity",
                                                   "run-parity"))
SEED = 1


def _unavailable(reason: str) -> None:
    if os.environ.get("MU2NET_CONTAINER_TESTS") == "1":
        pytest.fail(f"{reason} (MU2NET_CONTAINER_TESTS=1: required)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def client():
    docker = pytest.importorskip("docker")
    try:
        api = docker.from_env()
        api.ping()
    except docker.errors.DockerException as exc:
        _unavailable(f"no container API at DOCKER_HOST={os.environ.get('DOCKER_HOST', '')!r}: "
                     f"{exc} (make test-containers starts podman's)")
    try:
        api.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        _unavailable(f"image {IMAGE} is missing: images/build.sh --local --tag {IMAGE}")
    yield api
    api.close()


def keep_exit_status(client, image, command, volumes, **run_args) -> int:
    """kfp.local.docker_task_handler.run_docker_container without auto-removal (see the
    module docstring): returns the container's real exit status, then removes it."""
    run_args.pop("auto_remove", None)
    container = client.containers.run(image=image, command=command, volumes=volumes,
                                      detach=True, stdout=True, stderr=True,
                                      auto_remove=False, **run_args)
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


@pytest.fixture
def docker_runner(client, monkeypatch):
    """A factory of DockerRunners on IMAGE, uid 1000, no network, `folders` bind-mounted at
    the same paths; kfp.local's container start replaced by `keep_exit_status`."""
    from docker.types import Mount
    from kfp import local
    from kfp.local import docker_task_handler

    monkeypatch.setattr(docker_task_handler, "run_docker_container", keep_exit_status)

    def make(*folders: str):
        mounts = [Mount(target=f, source=f, type="bind") for f in folders]
        return local.DockerRunner(user=str(UID), network_mode="none", mounts=mounts)

    return make


def own_by_image_user(folder) -> None:
    """The image's user writes the mounted store and pipeline root."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, UID, UID)


def test_image_user_and_entrypoint(client):
    config = client.images.get(IMAGE).attrs["Config"]
    assert config["User"] == f"{UID}:{UID}"
    out = client.containers.run(IMAGE, ["python3", "-c",
                                        "import os, sys, kfp.dsl.executor_main, mu2net.steps; "
                                        "print(os.getuid(), sys.version_info[:2])"],
                                remove=True, network_mode="none")
    assert out.decode().split() == [str(UID), "(3,", "11)"]


def test_a_local_build_leaves_only_its_own_tags(client):
    """images/build.sh --local removes older local builds (2 GB each) after building."""
    from mu2net.version import entry_point_version

    tags = {tag for image in client.images.list() for tag in image.tags
            if tag.startswith("localhost/mu2net-cpu:")}
    assert tags == {IMAGE, f"localhost/mu2net-cpu:{entry_point_version()}"}


def test_fast_steps_keep_their_exit_status(client):
    """Containers exiting at once: the status is read before the container is removed."""
    before = len(client.containers.list(all=True))
    for code in (0, 3):
        assert keep_exit_status(client, IMAGE, ["sh", "-c", f"exit {code}"], {},
                                network_mode="none") == code
    assert len(client.containers.list(all=True)) == before  # removed afterwards


def test_a_failing_step_fails_the_run(tmp_path, docker_runner):
    """kfp.local's own handler reports a container it could not wait for as exit status 0:
    here a failing step must fail the run, with its error."""
    from mu2net_helpers import random_root_store

    from mu2net.errors import RunError
    from pipelines.local_run import run_local

    store = random_root_store(str(tmp_path), get_config(CONFIG))
    workdir = tmp_path / "work"
    (workdir / "pipeline_root").mkdir(parents=True)
    (workdir / "logs").mkdir()
    own_by_image_user(tmp_path)
    with pytest.raises(RunError, match=r"step ingest-task failed: TaskError: .*'nope'"):
        run_local(config_name=CONFIG, task_spec="demo:nope", store_uri=store.uri,
                  workdir=str(workdir), runner=docker_runner(str(tmp_path)), image=IMAGE)
    assert open_store(store.uri).head() == 0


def run_two_tasks(folder, runner=None, image=None) -> tuple[dict, dict, float]:
    """Onboard TASKS in order into a fresh store under `folder`; (status, paths, seconds)."""
    from mu2net_helpers import random_root_store

    from pipelines.local_run import run_local

    store = random_root_store(str(folder), get_config(CONFIG))
    if runner is not None:
        own_by_image_user(folder)
    started = time.monotonic()
    for spec, _, run_id in TASKS:
        workdir = os.path.join(folder, "work-" + run_id)
        os.makedirs(os.path.join(workdir, "pipeline_root"), exist_ok=True)
        os.makedirs(os.path.join(workdir, "logs"), exist_ok=True)
        if runner is not None:
            own_by_image_user(workdir)
        run_local(config_name=CONFIG, task_spec=spec, store_uri=store.uri, workdir=workdir,
                  seed=SEED, run_id=run_id, runner=runner, image=image)
    seconds = time.monotonic() - started
    store = open_store(store.uri)
    assert store.head() == len(TASKS)
    view = store.load_system()
    paths = {name: view.paths[name].to_dict() for _, name, _ in TASKS}
    return status_dict(store), paths, seconds


def test_two_tasks_in_containers_equal_the_subprocess_runner(tmp_path, docker_runner):
    in_process = tmp_path / "subprocess"
    in_containers = tmp_path / "containers"
    in_process.mkdir()
    in_containers.mkdir()
    expected_status, expected_paths, sub_s = run_two_tasks(in_process)
    status, paths, box_s = run_two_tasks(in_containers, docker_runner(str(in_containers)),
                                         image=IMAGE)
    print(f"two tasks at the {CONFIG} config: subprocess runner {sub_s:.1f} s, "
          f"containers {box_s:.1f} s")
    # the same committed paths (components, hyperparameters, metrics), hence the same
    # accuracies, scores and parameters
    assert paths == expected_paths
    # the same status, but for when each run committed (`run.committed_at`, a clock reading)
    assert {**status, "run": {**status["run"], "committed_at": None}} == {
        **expected_status, "run": {**expected_status["run"], "committed_at": None}}
    assert status["run"]["committed_at"] > expected_status["run"]["committed_at"]
    for _, name, _ in TASKS:
        assert 0.0 <= status["tasks"][name]["test_accuracy"] <= 1.0
    # every file the steps wrote belongs to the image's user
    owners = {os.stat(os.path.join(d, f)).st_uid
              for d, _, files in os.walk(in_containers / "store") for f in files}
    assert owners == {UID}
    shutil.rmtree(in_containers, ignore_errors=True)
