# mu2net CPU image: every light pipeline step, and children trained on the CPU pool.
# Build with images/build.sh (tags the image with the code version, `python -m mu2net.version`).
FROM python:3.11-slim

ARG KFP_VERSION=2.17.3
ARG TF_VERSION=2.21.0
ARG CODE_VERSION=dev

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    MU2NET_CODE_VERSION=${CODE_VERSION}

COPY images/requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt \
        "kfp==${KFP_VERSION}" "kfp-kubernetes==${KFP_VERSION}" "tensorflow-cpu==${TF_VERSION}"

# The project's wheel (built by images/build.sh into dist/); its dependencies are above.
COPY dist/mu2net-*.whl /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/mu2net-*.whl && rm -rf /tmp/wheels /tmp/requirements.txt \
    && python -c "import mu2net.steps, kfp, tensorflow"

# Non-root user (uid 1000 = components.placement.IMAGE_UID). The KFP launcher stages
# artifacts under /gcs, /minio and /s3: create them for that user. No credentials are baked
# in: on GKE the pod's Kubernetes service account maps to a Google one (Workload Identity).
RUN useradd --create-home --uid 1000 --user-group mu2net \
    && mkdir -p /gcs /minio /s3 && chown 1000:1000 /gcs /minio /s3
USER 1000:1000
WORKDIR /home/mu2net

LABEL org.opencontainers.image.title="mu2net-cpu" \
      org.opencontainers.image.version="${CODE_VERSION}"
