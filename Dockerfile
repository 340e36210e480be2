# Two images from one file (`make images` builds both, with docker or buildah: fashionrec.images).
# - target `transformer`: the FAISS transformer (no torch: it imports none).
# - target `pipeline` (the default, last stage): every KFP component and the KServe-hosted encoder; it trains, so it
#   carries torch (TORCH_INDEX_URL picks the build: PyPI's Linux wheel is a CUDA build, 7 GB in the image; a CPU
#   cluster passes https://download.pytorch.org/whl/cpu).
# The TorchServe predictor uses KServe's stock runtime image; the .mar carries everything it needs.
# Layers run from what changes least to what changes most: the dependencies (read from pyproject.toml alone) are
# installed before the package's code is copied, so a code change rebuilds only the last, thin layers.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim
FROM ${BASE_IMAGE} AS base
# faiss and torch need OpenMP's runtime (python:3.11-slim lacks it; the local stand-in base has it already).
RUN ldconfig -p | grep -q libgomp.so.1 \
 || (apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*)
ENV OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# kserve/ stays at /opt/fashionrec/kserve (config.IMAGE_KSERVE_DIR): the manifests run its programs.
WORKDIR /opt/fashionrec

FROM base AS transformer
COPY pyproject.toml ./
COPY src/fashionrec/images/requirements.py /usr/local/lib/fashionrec-requirements.py
RUN python /usr/local/lib/fashionrec-requirements.py pyproject.toml transformer,redis,storage > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY README.md ./
COPY src ./src
COPY feature_repo ./feature_repo
COPY kserve ./kserve
COPY manifests/base ./manifests/base
RUN pip install --no-deps . && rm -rf src
# Provenance last (it changes with every commit): labels, and a file that model.json and the registry record.
ARG GIT_COMMIT=unknown
ARG IMAGE_NAME=unknown
LABEL org.opencontainers.image.source="https://github.com/fashionrec/fashionrec" \
      org.opencontainers.image.revision="${GIT_COMMIT}" org.opencontainers.image.title="fashionrec-transformer"
RUN python -m fashionrec.provenance --write --git-commit "${GIT_COMMIT}" --image "${IMAGE_NAME}"
# uid 1000 has no home folder: caches go to /tmp, the one writable folder the manifests mount (an emptyDir).
ENV HOME=/tmp
USER 1000:1000
EXPOSE 8080 8081
CMD ["python", "/opt/fashionrec/kserve/transformer.py", "--help"]

FROM base AS pipeline
# torch first, pinned as in `make setup`, in a layer of its own (the largest, and the one that changes least: not
# even pyproject.toml, copied after it).
ARG TORCH_INDEX_URL=""
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml ./
COPY src/fashionrec/images/requirements.py /usr/local/lib/fashionrec-requirements.py
RUN python /usr/local/lib/fashionrec-requirements.py pyproject.toml pipeline,transformer,redis,storage --without torch \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt safetensors && rm /tmp/requirements.txt
COPY README.md ./
COPY src ./src
COPY feature_repo ./feature_repo
COPY kserve ./kserve
COPY manifests/base ./manifests/base
COPY components ./components
COPY pipelines/*.py ./pipelines/
RUN pip install --no-deps . && rm -rf src
ARG GIT_COMMIT=unknown
ARG IMAGE_NAME=unknown
LABEL org.opencontainers.image.source="https://github.com/fashionrec/fashionrec" \
      org.opencontainers.image.revision="${GIT_COMMIT}" org.opencontainers.image.title="fashionrec"
# The training pipeline's YAML that the monitoring pipeline's trigger_training step submits (IMAGE_TRAINING_PIPELINE)
# names this very image: compiled here, with the name the image is built under.
RUN fashionrec pipeline compile --out pipelines/compiled --image "${IMAGE_NAME}" \
 && python -m fashionrec.provenance --write --git-commit "${GIT_COMMIT}" --image "${IMAGE_NAME}"
ENV HOME=/tmp
USER 1000:1000
