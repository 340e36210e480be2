# Two images from one file. `docker build --target transformer` gives the FAISS transformer's image (no torch: it
# imports none); the default target (last stage) gives the KFP components' image, which trains and so carries torch.
# The predictor uses KServe's stock TorchServe runtime image; the .mar carries everything it needs.
FROM python:3.11-slim AS base
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*
# kserve/ stays at /opt/fashionrec/kserve (config.IMAGE_KSERVE_DIR): the manifests run its programs.
WORKDIR /opt/fashionrec
COPY pyproject.toml README.md ./
COPY src ./src
COPY feature_repo ./feature_repo
COPY kserve ./kserve
COPY manifests/base ./manifests/base
# The compiled training pipeline: the monitoring pipeline's trigger_training step submits it (IMAGE_TRAINING_PIPELINE).
COPY pipelines/compiled ./pipelines/compiled
ENV OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1

FROM base AS transformer
RUN pip install --no-cache-dir ".[transformer,redis,storage]" && rm -rf src
USER 1000:1000
EXPOSE 8080 8081
CMD ["python", "/opt/fashionrec/kserve/transformer.py", "--help"]

FROM base AS pipeline
# torch first, pinned as in `make setup` (PyPI's Linux wheel is a CUDA build: the train step uses the GPU when the
# pod has one).
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1
RUN pip install --no-cache-dir ".[pipeline,transformer,redis,storage]" && rm -rf src
USER 1000:1000
