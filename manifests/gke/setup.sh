#!/usr/bin/env bash
# GKE for mu2net: a cluster with Workload Identity, a CPU pool for the light steps, an L4 GPU
# pool and a TPU v5e (2x2, 4 chips, single host) pool, both autoscaling from zero on Spot VMs
# (preemptions are what the pipeline's retries are for), Google service accounts for the
# pipeline pods and the UI, and the bucket holding the store and the pipeline root.
#
#   PROJECT_ID=my-proj ZONE=us-central1-a SECURITY_GROUP=gke-security-groups@my-domain.com \
#     manifests/gke/setup.sh                                               # run it
#   DRY_RUN=1 PROJECT_ID=my-proj manifests/gke/setup.sh                      # print the commands
#
# Node labels the pipeline selects on (set by GKE): cloud.google.com/gke-accelerator=nvidia-l4;
# cloud.google.com/gke-tpu-accelerator=tpu-v5-lite-podslice + cloud.google.com/gke-tpu-topology=2x2.
# GKE taints accelerator nodes (nvidia.com/gpu, google.com/tpu: NoSchedule); the pipeline
# tolerates both. Config Connector users: the same node pools are in config-connector/.
set -euo pipefail

PROJECT_ID="${PROJECT_ID:?set PROJECT_ID}"
ZONE="${ZONE:-us-central1-a}"          # must offer both L4 GPUs and TPU v5e
CLUSTER="${CLUSTER:-mu2net}"
BUCKET="${BUCKET:-${PROJECT_ID}-mu2net}"
GPU_MAX="${GPU_MAX:-4}"                 # children_per_generation of the gpu config
TPU_MAX="${TPU_MAX:-4}"                 # children_per_generation of the tpu config
# Google Groups for RBAC: the operators' RoleBinding (manifests/components/mu2net/rbac.yaml)
# names a Google group, which GKE only resolves when the cluster is created with this group.
SECURITY_GROUP="${SECURITY_GROUP:-gke-security-groups@example.com}"

run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

run gcloud container clusters create "$CLUSTER" --project="$PROJECT_ID" --location="$ZONE" \
  --workload-pool="${PROJECT_ID}.svc.id.goog" --machine-type=e2-standard-8 \
  --num-nodes=1 --enable-autoscaling --min-nodes=1 --max-nodes=3 --release-channel=regular \
  --security-group="$SECURITY_GROUP"

run gcloud container node-pools create gpu-l4 --project="$PROJECT_ID" --cluster="$CLUSTER" \
  --location="$ZONE" --machine-type=g2-standard-8 \
  --accelerator=type=nvidia-l4,count=1,gpu-driver-version=default \
  --num-nodes=0 --enable-autoscaling --min-nodes=0 --max-nodes="$GPU_MAX" --spot \
  --workload-metadata=GKE_METADATA

run gcloud container node-pools create tpu-v5e --project="$PROJECT_ID" --cluster="$CLUSTER" \
  --location="$ZONE" --machine-type=ct5lp-hightpu-4t \
  --num-nodes=0 --enable-autoscaling --min-nodes=0 --max-nodes="$TPU_MAX" --spot \
  --workload-metadata=GKE_METADATA

run gcloud storage buckets create "gs://${BUCKET}" --project="$PROJECT_ID" \
  --location="${ZONE%-*}" --uniform-bucket-level-access

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

run gcloud container clusters get-credentials "$CLUSTER" --project="$PROJECT_ID" --location="$ZONE"
echo "next: set PROJECT_ID in manifests/components/mu2net/params.yaml, then install KFP (README)"
