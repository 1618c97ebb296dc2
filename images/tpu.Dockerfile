# mu2net TPU image: children trained on the GKE TPU v5e pool. Keras runs on the JAX backend
# (jax[tpu] brings libtpu); data parallelism over the slice's chips is keras.distribution's
# DataParallel. TensorFlow (CPU build) only feeds tf.data. Build with images/build.sh.
# BASE and WHEELHOUSE: as in images/cpu.Dockerfile (any Python 3.11 base with venv; an
# optional offline wheelhouse under dist/, bind-mounted for the install only).
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG KFP_VERSION=2.17.3
ARG TF_VERSION=2.21.0
ARG JAX_VERSION=0.10.2
ARG WHEELHOUSE=

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=jax \
    PATH=/opt/venv/bin:${PATH}

COPY images/requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,source=dist,target=/tmp/dist \
    python3 -m venv /opt/venv \
    && if [ -n "${WHEELHOUSE}" ]; then \
         export PIP_NO_INDEX=1 PIP_FIND_LINKS="/tmp/dist/${WHEELHOUSE}"; fi \
    && pip install -r /tmp/requirements.txt \
        "kfp==${KFP_VERSION}" "kfp-kubernetes==${KFP_VERSION}" "tensorflow-cpu==${TF_VERSION}" \
        "jax[tpu]==${JAX_VERSION}" \
        -f https://storage.googleapis.com/jax-releases/libtpu_releases.html

# The code version only from here on: a new version does not rebuild the layers above.
ARG CODE_VERSION=dev
ENV MU2NET_CODE_VERSION=${CODE_VERSION}
COPY dist/mu2net-*.whl /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/mu2net-*.whl && rm -rf /tmp/wheels /tmp/requirements.txt \
    && python3 -c "import mu2net.steps, kfp, tensorflow, jax"

RUN useradd --create-home --uid 1000 --user-group mu2net \
    && mkdir -p /gcs /minio /s3 && chown 1000:1000 /gcs /minio /s3
USER 1000:1000
WORKDIR /home/mu2net

LABEL org.opencontainers.image.title="mu2net-tpu" \
      org.opencontainers.image.version="${CODE_VERSION}"
