#!/usr/bin/env bash
# Build the mu2net images, tagged with the code version, with docker buildx.
#
#   images/build.sh [--registry REGISTRY] [--push] [--allow-dirty] [cpu] [gpu] [tpu]
#   images/build.sh --local [--tag IMAGE]...     # the CPU image, no registry, podman/buildah
#
# The tag is `python -m mu2net.version` (git describe), the same string `mu2net compile`
# writes into the pipeline, so a compiled pipeline names exactly the images built from its
# code. Images: REGISTRY/mu2net-{cpu,gpu,tpu}:TAG. --push refuses a tree with uncommitted
# changes (a `-dirty` tag) unless --allow-dirty. Cloud Build alternative: images/cloudbuild.yaml.
#
# --local builds the CPU image on this machine with no registry at all (no Docker Hub, no
# docker daemon): scripts/install_container_runtime.sh installs podman/buildah/mmdebstrap.
#   1. base: Debian bookworm minbase with python3 (3.11) and python3-venv, made by mmdebstrap
#      and `podman import`ed as $LOCAL_BASE (skipped when that image exists;
#      MU2NET_REBUILD_BASE=1 rebuilds it);
#   2. wheelhouse: every wheel the image installs, made on the host with `pip wheel` into
#      build/wheelhouse (Python 3.11, linux x86_64, like the base), skipped when its stamp
#      matches the requirements (images/requirements.txt and the Dockerfile's pins);
#   3. `podman build` of images/cpu.Dockerfile with BASE=$LOCAL_BASE and WHEELHOUSE=wheelhouse
#      (build/wheelhouse hard-linked into dist/wheelhouse): the image installs offline.
# Tags: localhost/mu2net-cpu:<code version>, and each --tag IMAGE (e.g. localhost/mu2net-cpu:test).
# Then older localhost/mu2net-cpu tags are removed (MU2NET_KEEP_OLD=1 keeps them).
# Each phase prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-.venv/bin/python}"
REGISTRY=""
PUSH=0
ALLOW_DIRTY=0
LOCAL=0
EXTRA_TAGS=()
LOCAL_BASE="${LOCAL_BASE:-localhost/mu2net-base:bookworm}"
PLATFORM="${PLATFORM:-linux/amd64}"
KINDS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --registry) REGISTRY="${2:?--registry needs a value}"; shift 2 ;;
    --push) PUSH=1; shift ;;
    --allow-dirty) ALLOW_DIRTY=1; shift ;;
    --local) LOCAL=1; shift ;;
    --tag) EXTRA_TAGS+=("${2:?--tag needs an image name}"); shift 2 ;;
    cpu|gpu|tpu) KINDS+=("$1"); shift ;;
    *) echo "build.sh: unknown argument '$1' (valid: --registry R, --push, --allow-dirty, --local, --tag IMAGE, cpu, gpu, tpu)" >&2; exit 2 ;;
  esac
done
if [[ $LOCAL -eq 1 ]]; then
  for kind in "${KINDS[@]}"; do
    if [[ "$kind" != cpu ]]; then
      echo "build.sh: --local builds only the cpu image, got '$kind' (valid with --local: cpu)" >&2
      exit 2
    fi
  done
  if [[ $PUSH -eq 1 || -n "$REGISTRY" ]]; then
    echo "build.sh: --local builds into local podman storage; --push/--registry need a registry" >&2
    exit 2
  fi
  KINDS=(cpu)
fi
[[ ${#KINDS[@]} -gt 0 ]] || KINDS=(cpu gpu tpu)
if [[ $LOCAL -eq 0 && ${#EXTRA_TAGS[@]} -gt 0 ]]; then
  echo "build.sh: --tag is for --local builds" >&2
  exit 2
fi

TAG="$("$PYTHON" -m mu2net.version)"
if [[ $PUSH -eq 1 && "$TAG" == *-dirty && $ALLOW_DIRTY -eq 0 ]]; then
  echo "build.sh: tag $TAG has uncommitted changes; commit first (or --allow-dirty)" >&2
  exit 2
fi

rm -rf dist
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir dist .

phase() { echo "build.sh: $1 took $(( $(date +%s) - $2 )) s"; }

if [[ $LOCAL -eq 1 ]]; then
  for tool in podman mmdebstrap; do
    command -v "$tool" >/dev/null || {
      echo "build.sh: --local needs $tool: run scripts/install_container_runtime.sh (as root)" >&2
      exit 1; }
  done
  # 1. the base image
  t0=$(date +%s)
  if [[ "${MU2NET_REBUILD_BASE:-0}" == 1 ]] || ! podman image exists "$LOCAL_BASE"; then
    mkdir -p build/base
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
      bookworm build/base/rootfs.tar
    podman import --quiet build/base/rootfs.tar "$LOCAL_BASE" >/dev/null
    rm -f build/base/rootfs.tar
    phase "base image $LOCAL_BASE (mmdebstrap + podman import)" "$t0"
  else
    echo "build.sh: base image $LOCAL_BASE exists (MU2NET_REBUILD_BASE=1 rebuilds it)"
  fi
  # 2. the wheelhouse: the Dockerfile's pins and images/requirements.txt
  t0=$(date +%s)
  pins() { sed -n "s/^ARG $1=//p" images/cpu.Dockerfile; }
  mkdir -p build/wheelhouse
  {
    grep -v '^#' images/requirements.txt | sed '/^$/d'
    echo "kfp==$(pins KFP_VERSION)"
    echo "kfp-kubernetes==$(pins KFP_VERSION)"
    echo "tensorflow-cpu==$(pins TF_VERSION)"
  } > build/wheelhouse.txt
  stamp="$(cat build/wheelhouse.txt images/cpu.Dockerfile | sha256sum | cut -d' ' -f1)"
  if [[ "$(cat build/wheelhouse/.stamp 2>/dev/null || true)" != "$stamp" ]]; then
    # offline from the wheels already there; else from the index (new or changed pins)
    if ! "$PYTHON" -m pip wheel --quiet --no-index --find-links build/wheelhouse \
         --wheel-dir build/wheelhouse -r build/wheelhouse.txt 2>/dev/null; then
      "$PYTHON" -m pip wheel --quiet --find-links build/wheelhouse --wheel-dir build/wheelhouse \
        -r build/wheelhouse.txt
    fi
    echo "$stamp" > build/wheelhouse/.stamp
    phase "wheelhouse build/wheelhouse ($(ls build/wheelhouse/*.whl | wc -l) wheels)" "$t0"
  else
    echo "build.sh: wheelhouse build/wheelhouse is up to date ($(ls build/wheelhouse/*.whl | wc -l) wheels)"
  fi
  mkdir -p dist/wheelhouse
  cp -al build/wheelhouse/*.whl dist/wheelhouse/ 2>/dev/null || cp build/wheelhouse/*.whl dist/wheelhouse/
  # 3. the image
  t0=$(date +%s)
  image="localhost/mu2net-cpu:${TAG}"
  args=(build --file images/cpu.Dockerfile --build-arg "BASE=${LOCAL_BASE}"
        --build-arg WHEELHOUSE=wheelhouse --build-arg "CODE_VERSION=${TAG}" --tag "$image")
  for extra in "${EXTRA_TAGS[@]}"; do args+=(--tag "$extra"); done
  podman "${args[@]}" .
  rm -rf dist/wheelhouse
  phase "image $image" "$t0"
  echo "built $image ${EXTRA_TAGS[*]} ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
  # 4. older local builds (2 GB each) go: keep this build's tags only (MU2NET_KEEP_OLD=1 keeps)
  if [[ "${MU2NET_KEEP_OLD:-0}" != 1 ]]; then
    keep=" $image ${EXTRA_TAGS[*]} "
    while read -r old; do
      [[ "$keep" == *" $old "* ]] || { podman rmi --force "$old" >/dev/null && echo "build.sh: removed old $old"; }
    done < <(podman images --format '{{.Repository}}:{{.Tag}}' localhost/mu2net-cpu)
    podman image prune --force >/dev/null
  fi
  exit 0
fi

for kind in "${KINDS[@]}"; do
  image="${REGISTRY:+${REGISTRY%/}/}mu2net-${kind}:${TAG}"
  args=(buildx build --platform "$PLATFORM" -f "images/${kind}.Dockerfile"
        --build-arg "CODE_VERSION=${TAG}" -t "$image")
  if [[ $PUSH -eq 1 ]]; then args+=(--push); else args+=(--load); fi
  docker "${args[@]}" .
  echo "built $image"
done
echo "compile with: mu2net compile --registry '${REGISTRY}' --config gpu --target gpu --out build/"
