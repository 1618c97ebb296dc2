# mu2net GPU image: children trained on the GKE GPU pool (TensorFlow with CUDA from pip; the
# NVIDIA driver is mounted by GKE). Several GPUs in one pod train one child with
# tf.distribute.MirroredStrategy. Build with images/build.sh.
# BASE and WHEELHOUSE: as in images/cpu.Dockerfile (any Python 3.11 base with venv; an
# optional offline wheelhouse under dist/, bind-mounted for the install only).
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG KFP_VERSION=2.17.3
ARG TF_VERSION=2.21.0
ARG WHEELHOUSE=

# LD_LIBRARY_PATH / PATH: GKE mounts the NVIDIA driver under /usr/local/nvidia and sets no
# variables; without them TensorFlow finds no libcuda and trains on the CPU without a word.
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib \
    PATH=/opt/venv/bin:/usr/local/nvidia/bin:${PATH}

COPY images/requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,source=dist,target=/tmp/dist \
    python3 -m venv /opt/venv \
    && if [ -n "${WHEELHOUSE}" ]; then \
         export PIP_NO_INDEX=1 PIP_FIND_LINKS="/tmp/dist/${WHEELHOUSE}"; fi \
    && pip install -r /tmp/requirements.txt \
        "kfp==${KFP_VERSION}" "kfp-kubernetes==${KFP_VERSION}" "tensorflow[and-cuda]==${TF_VERSION}"

# The project's wheel; --no-deps because its metadata names tensorflow-cpu, which this image
# replaces with the CUDA build of the same version.
# The code version only from here on: a new version does not rebuild the layers above.
ARG CODE_VERSION=dev
ENV MU2NET_CODE_VERSION=${CODE_VERSION}
COPY dist/mu2net-*.whl /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/mu2net-*.whl && rm -rf /tmp/wheels /tmp/requirements.txt \
    && python3 -c "import mu2net.steps, kfp, tensorflow"

RUN useradd --create-home --uid 1000 --user-group mu2net \
    && mkdir -p /gcs /minio /s3 && chown 1000:1000 /gcs /minio /s3
USER 1000:1000
WORKDIR /home/mu2net

LABEL org.opencontainers.image.title="mu2net-gpu" \
      org.opencontainers.image.version="${CODE_VERSION}"
