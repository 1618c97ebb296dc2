#!/usr/bin/env bash
# Build the mu2net images, tagged with the code version, with docker buildx.
#
#   images/build.sh [--registry REGISTRY] [--push] [--allow-dirty] [cpu] [gpu] [tpu]
#
# The tag is `python -m mu2net.version` (git describe), the same string `mu2net compile`
# writes into the pipeline, so a compiled pipeline names exactly the images built from its
# code. Images: REGISTRY/mu2net-{cpu,gpu,tpu}:TAG. --push refuses a tree with uncommitted
# changes (a `-dirty` tag) unless --allow-dirty. Cloud Build alternative: images/cloudbuild.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
REGISTRY=""
PUSH=0
ALLOW_DIRTY=0
PLATFORM="${PLATFORM:-linux/amd64}"
KINDS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --registry) REGISTRY="${2:?--registry needs a value}"; shift 2 ;;
    --push) PUSH=1; shift ;;
    --allow-dirty) ALLOW_DIRTY=1; shift ;;
    cpu|gpu|tpu) KINDS+=("$1"); shift ;;
    *) echo "build.sh: unknown argument '$1' (valid: --registry R, --push, --allow-dirty, cpu, gpu, tpu)" >&2; exit 2 ;;
  esac
done
[[ ${#KINDS[@]} -gt 0 ]] || KINDS=(cpu gpu tpu)

TAG="$("$PYTHON" -m mu2net.version)"
if [[ $PUSH -eq 1 && "$TAG" == *-dirty && $ALLOW_DIRTY -eq 0 ]]; then
  echo "build.sh: tag $TAG has uncommitted changes; commit first (or --allow-dirty)" >&2
  exit 2
fi

rm -rf dist
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir dist .

for kind in "${KINDS[@]}"; do
  image="${REGISTRY:+${REGISTRY%/}/}mu2net-${kind}:${TAG}"
  args=(buildx build --platform "$PLATFORM" -f "images/${kind}.Dockerfile"
        --build-arg "CODE_VERSION=${TAG}" -t "$image")
  if [[ $PUSH -eq 1 ]]; then args+=(--push); else args+=(--load); fi
  docker "${args[@]}" .
  echo "built $image"
done
echo "compile with: mu2net compile --registry '${REGISTRY}' --config gpu --target gpu --out build/"
