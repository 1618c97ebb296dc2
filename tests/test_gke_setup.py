"""manifests/gke/setup.sh with a stand-in `gcloud` on PATH that answers the quota queries
from canned rows (the shape `--flatten=quotas --format=csv[no-heading](...)` prints) and
records every other call: the script refuses to create anything when the Spot GPU/TPU quota
is short and names what is missing, creates the image repository in the cluster's region and
lets the nodes read it."""

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "manifests" / "gke" / "setup.sh"
ENOUGH = {"PREEMPTIBLE_NVIDIA_L4_GPUS": (8, 0), "NVIDIA_L4_GPUS": (8, 0),
          "PREEMPTIBLE_TPU_LITE_PODSLICE_V5": (32, 0), "TPU_LITE_PODSLICE_V5": (0, 0),
          "CPUS": (96, 8)}
GLOBAL = {"GPUS_ALL_REGIONS": (8, 0), "CPUS_ALL_REGIONS": (128, 8)}


def fake_gcloud(tmp_path, regional, project):
    def rows(quotas):
        return "".join(f"{m},{limit:.1f},{usage:.1f}\n" for m, (limit, usage) in quotas.items())
    (tmp_path / "regional.csv").write_text(rows(regional))
    (tmp_path / "global.csv").write_text(rows(project))
    gcloud = tmp_path / "bin" / "gcloud"
    gcloud.parent.mkdir()
    gcloud.write_text(f"""#!/usr/bin/env bash
case "$*" in
  "compute regions describe us-central1 "*) cat {tmp_path}/regional.csv ;;
  "compute project-info describe "*) cat {tmp_path}/global.csv ;;
  *) echo "$*" >> {tmp_path}/calls.log ;;
esac
""")
    gcloud.chmod(0o755)
    return gcloud.parent


def run_setup(tmp_path, regional, project=GLOBAL, **env):
    path = fake_gcloud(tmp_path, regional, project)
    env = {**os.environ, "PATH": f"{path}:{os.environ['PATH']}", "PROJECT_ID": "proj", **env}
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)
    calls = tmp_path / "calls.log"
    return out, calls.read_text().splitlines() if calls.exists() else []


def test_enough_quota_creates_the_cluster_the_repository_and_the_read_grant(tmp_path):
    out, calls = run_setup(tmp_path, ENOUGH)
    assert out.returncode == 0, out.stderr
    assert any(c.startswith("container node-pools create gpu-l4") for c in calls)
    repo = [c for c in calls if c.startswith("artifacts repositories create mu2net")]
    assert repo and "--location=us-central1" in repo[0] and "--repository-format=docker" in repo[0]
    grant = [c for c in calls if c.startswith("artifacts repositories add-iam-policy-binding")]
    assert grant and "--role=roles/artifactregistry.reader" in grant[0]
    assert "serviceAccount:mu2net-nodes@proj.iam.gserviceaccount.com" in grant[0]
    # the nodes run as that account, so the grant is what lets them pull
    for create in [c for c in calls if c.startswith("container ")
                   and " create " in f" {c} "]:
        assert "--service-account=mu2net-nodes@proj.iam.gserviceaccount.com" in create, create


def test_short_quota_is_named_and_nothing_is_created(tmp_path):
    short = {**ENOUGH, "PREEMPTIBLE_NVIDIA_L4_GPUS": (1, 0),
             "PREEMPTIBLE_TPU_LITE_PODSLICE_V5": (0, 0), "TPU_LITE_PODSLICE_V5": (4, 4)}
    out, calls = run_setup(tmp_path, short, {"GPUS_ALL_REGIONS": (0, 0)})
    assert out.returncode == 1
    assert calls == []  # refused before creating anything
    err = out.stderr
    assert "PREEMPTIBLE_NVIDIA_L4_GPUS in us-central1: 1 free of 1, need 4" in err
    # no Spot TPU quota: the standard one is what Spot VMs would draw on, and it is used up
    assert "PREEMPTIBLE_TPU_LITE_PODSLICE_V5 (0) and TPU_LITE_PODSLICE_V5 in us-central1: " \
           "0 free of 4, need 16" in err
    assert "GPUS_ALL_REGIONS in the project: 0 free of 0, need 4" in err
    assert "iam-admin/quotas?project=proj" in err


def test_fewer_nodes_need_less_quota_and_the_check_can_be_skipped(tmp_path):
    small = {**ENOUGH, "PREEMPTIBLE_NVIDIA_L4_GPUS": (1, 0), "PREEMPTIBLE_TPU_LITE_PODSLICE_V5":
             (4, 0)}
    out, _ = run_setup(tmp_path, small, GPU_MAX="1", TPU_MAX="1")
    assert out.returncode == 0, out.stderr
    (tmp_path / "calls.log").unlink()
    (tmp_path / "bin" / "gcloud").unlink()
    (tmp_path / "bin").rmdir()
    out, calls = run_setup(tmp_path, {}, {}, CHECK_QUOTA="0")
    assert out.returncode == 0, out.stderr
    assert calls


def test_a_profile_namespace_gets_its_workload_identity_binding():
    env = {**os.environ, "DRY_RUN": "1", "PROJECT_ID": "proj"}
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert "default-editor" not in out  # standalone KFP: no profile
    env["PROFILE_NAMESPACE"] = "kubeflow-user-example-com"
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert "proj.svc.id.goog\\[kubeflow-user-example-com/default-editor\\]" in out
