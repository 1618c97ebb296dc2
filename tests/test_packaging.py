"""The wheel (issue 24, point 8): only `mu2net` is installed top level, the KFP wrappers ride
along as `mu2net.components` and `mu2net.pipelines`, and `mu2net compile` works from the
installed wheel with no checkout on the path. Built from a copy of the sources, offline
(`--no-build-isolation`: the venv's setuptools), so the checkout gets no build/ or egg-info."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "mu2net", "components", "pipelines")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(src)], check=True, timeout=300,
                   capture_output=True)
    (built,) = out.glob("mu2net-*.whl")
    return built


def test_wheel_installs_only_mu2net_at_top_level(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"mu2net"}
    assert "mu2net/components/train_child.py" in names
    assert "mu2net/pipelines/onboard_task.py" in names
    assert "mu2net/tasks/glyph_fonts.json" in names
    # every subpackage of the library is in setup.cfg's explicit package list
    source = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "mu2net").rglob("__init__.py")}
    assert {s for s in source if f"{s}/__init__.py" not in names} == set()


def test_compile_works_from_the_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300, capture_output=True)
    assert not (target / "components").exists() and not (target / "pipelines").exists()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    # (a top-level `pipelines` may be importable here, another checkout's: the collision the
    # wheel avoids; the installed CLI must use its own)
    code = ("import sys, mu2net\n"
            "assert mu2net.__file__.startswith(sys.argv[1]), mu2net.__file__\n"
            "from mu2net.cli import main\n"
            "code = main(['compile', '--config', 'testing', '--target', 'cpu', '--out', 'b',"
            " '--registry', 'r.example/p', '--store', 'gs://b/s'])\n"
            "used = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pipelines', 'components') or m.startswith(('mu2net.pipelines', "
            "'mu2net.components')))\n"
            "assert all(m.startswith('mu2net.') for m in used), used\n"
            "assert 'mu2net.pipelines.onboard_task' in used, used\n"
            "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=work, env=env,
                          timeout=300, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (work / "b" / "onboard-testing-cpu.yaml").is_file()
