# mu2net CPU image: every light pipeline step, and children trained on the CPU pool.
# Build with images/build.sh (tags the image with the code version, `python -m mu2net.version`);
# `images/build.sh --local` builds it with no registry at all (see images/build.sh).
#
# BASE: any image with Python 3.11 and its venv module (`python3 -m venv`): the public
# python:3.11-slim, or a Debian bookworm rootfs made with mmdebstrap and `podman import`.
# WHEELHOUSE: empty installs from PyPI; else a folder of wheels under dist/ in the build
# context (dist/wheelhouse), installed offline (`pip install --no-index --find-links`). The
# wheels are bind-mounted for that one RUN and never enter a layer.
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG KFP_VERSION=2.17.3
ARG TF_VERSION=2.21.0
ARG WHEELHOUSE=

# The packages live in a venv (/opt/venv, first on PATH: the components' `python3`), so the
# same steps work on python:3.11-slim and on Debian's externally managed python3.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    PATH=/opt/venv/bin:${PATH}

# The dependencies (one layer, cached while the requirements stay the same). TensorFlow's C++
# headers (tensorflow/include, ~290 MB) only serve building custom ops: removed.
COPY images/requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,source=dist,target=/tmp/dist \
    python3 -m venv /opt/venv \
    && if [ -n "${WHEELHOUSE}" ]; then \
         export PIP_NO_INDEX=1 PIP_FIND_LINKS="/tmp/dist/${WHEELHOUSE}"; fi \
    && pip install -r /tmp/requirements.txt \
        "kfp==${KFP_VERSION}" "kfp-kubernetes==${KFP_VERSION}" "tensorflow-cpu==${TF_VERSION}" \
    && rm -rf /tmp/requirements.txt /opt/venv/lib/python3.11/site-packages/tensorflow/include

# The project's wheel (built by images/build.sh into dist/); its dependencies are above. The
# code version is declared only here, so a new version does not rebuild the layer above.
ARG CODE_VERSION=dev
ENV MU2NET_CODE_VERSION=${CODE_VERSION}
COPY dist/mu2net-*.whl /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/mu2net-*.whl && rm -rf /tmp/wheels \
    && python3 -c "import mu2net.steps, kfp, tensorflow"

# Non-root user (uid 1000 = components.placement.IMAGE_UID). The KFP launcher stages
# artifacts under /gcs, /minio and /s3: create them for that user. No credentials are baked
# in: on GKE the pod's Kubernetes service account maps to a Google one (Workload Identity).
RUN useradd --create-home --uid 1000 --user-group mu2net \
    && mkdir -p /gcs /minio /s3 && chown 1000:1000 /gcs /minio /s3
USER 1000:1000
WORKDIR /home/mu2net

LABEL org.opencontainers.image.title="mu2net-cpu" \
      org.opencontainers.image.version="${CODE_VERSION}"
