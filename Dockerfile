# The project image: KFP components (validate, train, embed, features, index, package) and the FAISS transformer.
# The predictor uses KServe's stock TorchServe runtime image; the .mar carries everything it needs.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/fashionrec
# torch first, pinned as in `make setup` (PyPI's Linux wheel is a CUDA build: the train step uses the GPU when the
# pod has one).
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1
COPY pyproject.toml README.md ./
COPY src ./src
COPY feature_repo ./feature_repo
COPY kserve ./kserve
RUN pip install --no-cache-dir ".[pipeline,transformer]" && rm -rf src

ENV OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
USER 1000:1000
EXPOSE 8080 8081
CMD ["python", "-m", "fashionrec.transformer", "--help"]
