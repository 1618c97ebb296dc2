#!/usr/bin/env bash
# GKE for mu2net: a cluster with Workload Identity, a CPU pool for the light steps, an L4 GPU
# pool and a TPU v5e (2x2, 4 chips, single host) pool, both autoscaling from zero on Spot VMs,
# Google service accounts for the pipeline pods, the UI and the nodes, the bucket holding the
# store and the pipeline root, and the Artifact Registry repository the images are pushed to
# (in the cluster's region, which the nodes may read).
#
# On Spot nodes a pod dies when its VM is reclaimed. The workflow controller retries exactly
# that (node shutdown, preemption, eviction, pod deletion), not a Python error or an OOM kill:
# manifests/components/spot-retries, README "Retries on Spot nodes".
#
#   PROJECT_ID=my-proj ZONE=us-central1-a SECURITY_GROUP=gke-security-groups@my-domain.com \
#     manifests/gke/setup.sh                                               # run it
#   DRY_RUN=1 PROJECT_ID=my-proj manifests/gke/setup.sh                      # print the commands
#
# Before creating anything it checks the project's Spot GPU/TPU quota in the region for
# GPU_MAX L4 GPUs and TPU_MAX x 4 v5e chips (`gcloud compute regions describe`,
# `gcloud compute project-info describe`) and names every quota that is short; CHECK_QUOTA=0
# skips the check. A pod that cannot get a node is ended by the run's deadline
# (README "Deadlines"), so a missing quota shows up as failed runs, not as a stalled schedule.
#
# Node labels the pipeline selects on (set by GKE): cloud.google.com/gke-accelerator=nvidia-l4;
# cloud.google.com/gke-tpu-accelerator=tpu-v5-lite-podslice + cloud.google.com/gke-tpu-topology=2x2.
# GKE taints accelerator nodes (nvidia.com/gpu, google.com/tpu: NoSchedule); the pipeline
# tolerates both. Config Connector users: the same node pools are in config-connector/.
set -euo pipefail

PROJECT_ID="${PROJECT_ID:?set PROJECT_ID}"
ZONE="${ZONE:-us-central1-a}"          # must offer both L4 GPUs and TPU v5e
REGION="${ZONE%-*}"                     # bucket, image repository and quotas
CLUSTER="${CLUSTER:-mu2net}"
BUCKET="${BUCKET:-${PROJECT_ID}-mu2net}"
REPOSITORY="${REPOSITORY:-mu2net}"      # images: ${REGION}-docker.pkg.dev/${PROJECT_ID}/mu2net
GPU_MAX="${GPU_MAX:-4}"                 # children_per_generation of the gpu config
TPU_MAX="${TPU_MAX:-4}"                 # children_per_generation of the tpu config
TPU_CHIPS=4                             # ct5lp-hightpu-4t: one 2x2 host
NODE_SA="mu2net-nodes@${PROJECT_ID}.iam.gserviceaccount.com"
# Google Groups for RBAC: the operators' RoleBinding (manifests/components/mu2net/rbac.yaml)
# names a Google group, which GKE only resolves when the cluster is created with this group.
SECURITY_GROUP="${SECURITY_GROUP:-gke-security-groups@example.com}"

run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# quota METRIC NEEDED ROWS: "" if ROWS (metric,limit,usage lines) leave NEEDED free, else a
# line saying what is missing. Spot VMs draw on the PREEMPTIBLE_ quota; where that is 0 they
# draw on the standard one (https://cloud.google.com/compute/resource-usage#preemptible).
quota_short() {
  local metric="$1" needed="$2" rows="$3" where="$4"
  awk -F, -v m="$metric" -v n="$needed" -v w="$where" '
    $1 == "PREEMPTIBLE_" m { pl = $2; pu = $3; p = 1 }
    $1 == m { sl = $2; su = $3; s = 1 }
    END {
      if (p && pl > 0) { free = pl - pu; name = "PREEMPTIBLE_" m; limit = pl }
      else if (s) { free = sl - su; name = (p ? "PREEMPTIBLE_" m " (0) and " m : m); limit = sl }
      else { free = 0; name = (m ~ /_ALL_REGIONS$/ ? m : "PREEMPTIBLE_" m); limit = 0 }
      if (free < n) printf "  %s in %s: %d free of %d, need %d\n", name, w, free, limit, n
    }' <<<"$rows"
}

check_quota() {
  if [[ "${CHECK_QUOTA:-1}" == 0 ]]; then return; fi
  local regional global missing=""
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    run gcloud compute regions describe "$REGION" --project="$PROJECT_ID" \
      --flatten=quotas "--format=csv[no-heading](quotas.metric,quotas.limit,quotas.usage)"
    run gcloud compute project-info describe --project="$PROJECT_ID" \
      --flatten=quotas "--format=csv[no-heading](quotas.metric,quotas.limit,quotas.usage)"
    return
  fi
  regional=$(gcloud compute regions describe "$REGION" --project="$PROJECT_ID" \
    --flatten=quotas "--format=csv[no-heading](quotas.metric,quotas.limit,quotas.usage)")
  global=$(gcloud compute project-info describe --project="$PROJECT_ID" \
    --flatten=quotas "--format=csv[no-heading](quotas.metric,quotas.limit,quotas.usage)")
  missing+=$(quota_short NVIDIA_L4_GPUS "$GPU_MAX" "$regional" "$REGION")
  missing+=$(quota_short TPU_LITE_PODSLICE_V5 "$((TPU_MAX * TPU_CHIPS))" "$regional" "$REGION")
  missing+=$(quota_short GPUS_ALL_REGIONS "$GPU_MAX" "$global" "the project")
  if [[ -n "$missing" ]]; then
    {
      echo "setup.sh: project $PROJECT_ID lacks quota for GPU_MAX=$GPU_MAX L4 GPUs and TPU_MAX=$TPU_MAX v5e hosts:"
      echo "$missing"
      echo "request it at https://console.cloud.google.com/iam-admin/quotas?project=$PROJECT_ID," \
           "or lower GPU_MAX / TPU_MAX (CHECK_QUOTA=0 skips this check)"
    } >&2
    exit 1
  fi
}

check_quota

# the nodes' own identity: pull images and write logs/metrics, nothing else (pods act as the
# Workload Identity accounts below, never as this one)
run gcloud iam service-accounts create mu2net-nodes --project="$PROJECT_ID"
run gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:${NODE_SA}" \
  --role=roles/container.defaultNodeServiceAccount --condition=None

run gcloud artifacts repositories create "$REPOSITORY" --project="$PROJECT_ID" \
  --location="$REGION" --repository-format=docker
run gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY" --project="$PROJECT_ID" \
  --location="$REGION" --member="serviceAccount:${NODE_SA}" --role=roles/artifactregistry.reader

run gcloud container clusters create "$CLUSTER" --project="$PROJECT_ID" --location="$ZONE" \
  --workload-pool="${PROJECT_ID}.svc.id.goog" --machine-type=e2-standard-8 \
  --num-nodes=1 --enable-autoscaling --min-nodes=1 --max-nodes=3 --release-channel=regular \
  --security-group="$SECURITY_GROUP" --service-account="$NODE_SA"

run gcloud container node-pools create gpu-l4 --project="$PROJECT_ID" --cluster="$CLUSTER" \
  --location="$ZONE" --machine-type=g2-standard-8 \
  --accelerator=type=nvidia-l4,count=1,gpu-driver-version=default \
  --num-nodes=0 --enable-autoscaling --min-nodes=0 --max-nodes="$GPU_MAX" --spot \
  --workload-metadata=GKE_METADATA --service-account="$NODE_SA"

run gcloud container node-pools create tpu-v5e --project="$PROJECT_ID" --cluster="$CLUSTER" \
  --location="$ZONE" --machine-type=ct5lp-hightpu-4t \
  --num-nodes=0 --enable-autoscaling --min-nodes=0 --max-nodes="$TPU_MAX" --spot \
  --workload-metadata=GKE_METADATA --service-account="$NODE_SA"

run gcloud storage buckets create "gs://${BUCKET}" --project="$PROJECT_ID" \
  --location="$REGION" --uniform-bucket-level-access

for gsa in mu2net-pipelines mu2net-ui; do
  run gcloud iam service-accounts create "$gsa" --project="$PROJECT_ID"
done
# pipeline pods read and write the store and the pipeline root; the UI only reads artifacts
run gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
  --member="serviceAccount:mu2net-pipelines@${PROJECT_ID}.iam.gserviceaccount.com" \
  --role=roles/storage.objectAdmin
run gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
  --member="serviceAccount:mu2net-ui@${PROJECT_ID}.iam.gserviceaccount.com" \
  --role=roles/storage.objectViewer
# Workload Identity: kubeflow/pipeline-runner -> mu2net-pipelines, kubeflow/ml-pipeline-ui -> mu2net-ui
run gcloud iam service-accounts add-iam-policy-binding \
  "mu2net-pipelines@${PROJECT_ID}.iam.gserviceaccount.com" --project="$PROJECT_ID" \
  --role=roles/iam.workloadIdentityUser \
  --member="serviceAccount:${PROJECT_ID}.svc.id.goog[kubeflow/pipeline-runner]"
run gcloud iam service-accounts add-iam-policy-binding \
  "mu2net-ui@${PROJECT_ID}.iam.gserviceaccount.com" --project="$PROJECT_ID" \
  --role=roles/iam.workloadIdentityUser \
  --member="serviceAccount:${PROJECT_ID}.svc.id.goog[kubeflow/ml-pipeline-ui]"

# Full Kubeflow (multi-user): runs execute in a profile namespace as its KSA default-editor
# (manifests/kubeflow-profile); PROFILE_NAMESPACE=kubeflow-user-example-com binds it too.
if [[ -n "${PROFILE_NAMESPACE:-}" ]]; then
  run gcloud iam service-accounts add-iam-policy-binding \
    "mu2net-pipelines@${PROJECT_ID}.iam.gserviceaccount.com" --project="$PROJECT_ID" \
    --role=roles/iam.workloadIdentityUser \
    --member="serviceAccount:${PROJECT_ID}.svc.id.goog[${PROFILE_NAMESPACE}/default-editor]"
fi

run gcloud container clusters get-credentials "$CLUSTER" --project="$PROJECT_ID" --location="$ZONE"
echo "next: set PROJECT_ID in manifests/components/mu2net/params.yaml, then install KFP (README);"
echo "push images to ${REGION}-docker.pkg.dev/${PROJECT_ID}/${REPOSITORY}"
