"""Names, ports and paths that several parts of the system must agree on, defined once."""

from __future__ import annotations

# The InferenceService and the transformer's model share this name; clients call /v2/models/fashionrec/infer.
MODEL_NAME = "fashionrec"


def predictor_model_name(model_version: str) -> str:
    """The encoder's name in the predictor: one per model version (``fashionrec-<model_version>``). The transformer
    calls the version its index belongs to, so a transformer and a predictor of two different rollouts can never mix
    models. (The v2 protocol's /versions/<v>/ routes would say the same, but neither TorchServe 0.12 nor KServe 0.21
    implements them: TorchServe routes only /v2/models/<name>/infer, KServe raises NotImplementedError.)"""
    return f"{MODEL_NAME}-{model_version}"


def feedback_path(model_name: str = MODEL_NAME) -> str:
    """Where clients post shoppers' feedback events (fashionrec.serving.feedback), beside /v2/models/<name>/infer."""
    return f"/v2/models/{model_name}/feedback"


# Container images (the Dockerfile's two targets), as published; the tag is bumped on release. The KFP components
# train, so their image carries torch; the transformer's does not (it imports no torch). `make images
# IMAGE_REGISTRY=... IMAGE_TAG=...` builds them under a user's own names (fashionrec.images).
IMAGE_REGISTRY = "ghcr.io/fashionrec"
IMAGE_TAG = "0.1.0"
PROJECT_IMAGE_NAME = "fashionrec"  # the Dockerfile's `pipeline` target
TRANSFORMER_IMAGE_NAME = "fashionrec-transformer"  # its `transformer` target
PROJECT_IMAGE = f"{IMAGE_REGISTRY}/{PROJECT_IMAGE_NAME}:{IMAGE_TAG}"
TRANSFORMER_IMAGE = f"{IMAGE_REGISTRY}/{TRANSFORMER_IMAGE_NAME}:{IMAGE_TAG}"
# Where both images hold kserve/ (the entrypoints the manifests run).
IMAGE_KSERVE_DIR = "/opt/fashionrec/kserve"
# The image's provenance (git commit, package versions), written by its build (fashionrec.provenance).
IMAGE_BUILD_INFO = "/opt/fashionrec/build-info.json"

EMBEDDING_DIM = 256
# (height, width) of the encoder input: the native size of the Kaggle "small" images (60x80 portrait).
DEFAULT_IMAGE_SIZE = (80, 60)

# Kaggle "Fashion Product Images" styles.csv columns, in file order.
STYLES_COLUMNS = (
    "id",
    "gender",
    "masterCategory",
    "subCategory",
    "articleType",
    "baseColour",
    "season",
    "year",
    "usage",
    "productDisplayName",
)
LABEL_COLUMN = "articleType"
NAME_COLUMN = "productDisplayName"
COLOUR_COLUMN = "baseColour"
# Attributes the encoder also learns to predict (auxiliary heads): they shape the embedding beyond articleType.
AUXILIARY_LABEL_COLUMNS = ("masterCategory", "subCategory", "gender", "baseColour")
# Attributes served with every recommendation (and stored in Feast): every catalogue column but the id.
ATTRIBUTE_COLUMNS = STYLES_COLUMNS[1:]
# Attributes a query may filter on (v2 parameter FILTER_PARAMETER): equality or in-set on these, a range on the year.
FILTER_COLUMNS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage")
YEAR_COLUMN = "year"
FAMILY_COLUMN = "family"  # embeddings parquet: each item's product group (colour variants, near-duplicate photos)

# Feast names (feature_repo/ uses these through fashionrec.retrieval.feast_store).
FEAST_ENTITY = "item"
FEAST_JOIN_KEY = "item_id"
# Vectors are keyed by (item_id, model_version): two model versions' vectors coexist in one shared online store.
FEAST_MODEL_ENTITY = "model"
FEAST_VERSION_KEY = "model_version"
FEAST_EMBEDDING_VIEW = "item_embedding"
FEAST_ATTRIBUTE_VIEW = "item_attributes"
FEAST_SOURCE_FILE = "data/item_embeddings.parquet"

# v2 tensor names of the public contract.
INPUT_IMAGE = "image"
INPUT_ITEM_ID = "item_id"
OUTPUT_EMBEDDING = "embedding"
OUTPUT_ITEM_ID = "item_id"
OUTPUT_SCORE = "score"
DEFAULT_TOP_K = 10
MAX_TOP_K = 100
# v2 request parameters that steer a query (README, contract): scalars, as v2 parameters must be over REST and gRPC.
FILTER_PARAMETER = "filter"  # a JSON object: {"gender": "Women", "articleType": ["Tops", "Tunics"], "year": {"min": 2012}}
EXCLUDE_PARAMETER = "exclude_ids"  # a JSON array of item ids (or one id) never to return
FAMILY_CAP_PARAMETER = "family_cap"  # at most this many answers from one product family
MMR_PARAMETER = "mmr_lambda"  # maximal marginal relevance: 1 = similarity only, lower trades it for variety
# Label-vote re-ranking in the transformer (and in the evaluation, which scores what is served): the nearest
# RERANK_VOTERS candidates vote on the query's articleType; each of the RERANK_DEPTH nearest gains RERANK_WEIGHT x
# its type's share of the vote (fashionrec.retrieval.rerank; chosen on real photos, benchmarks/bench_quality.py).
RERANK_VOTERS = 20
RERANK_DEPTH = 50
RERANK_WEIGHT = 0.05

# Ports as the InferenceService/ServingRuntime expose them inside the pods.
TRANSFORMER_HTTP_PORT = 8080
TRANSFORMER_GRPC_PORT = 8081
# The predictor pod's CPUs (its request = its limit, in the manifests): TorchServe runs one single-threaded worker
# per CPU (on 2 cores raw torch does 204 images/s on 1 thread, 355 on 2, so two 1-thread workers out-serve one
# 2-thread worker under concurrency); the KServe-hosted encoder is one process with a torch thread per CPU.
PREDICTOR_CPUS = 2
TORCHSERVE_INFERENCE_PORT = 8085
TORCHSERVE_MANAGEMENT_PORT = 8086
TORCHSERVE_METRICS_PORT = 8082
TORCHSERVE_GRPC_INFERENCE_PORT = 7070
TORCHSERVE_GRPC_MANAGEMENT_PORT = 7071
# TorchServe's token auth (local serving) writes its management and inference keys here, in its working directory.
TORCHSERVE_KEY_FILE = "key_file.json"

# Dynamic batching of the encoder (TorchServe's batch_size/max_batch_delay, and fashionrec.serving.batching in the
# KServe-hosted encoder): requests arriving within the delay share one forward pass of up to this many images.
DYNAMIC_BATCH_SIZE = 8
DYNAMIC_BATCH_DELAY_MS = 5

# Request limits: anything larger is rejected with a 4xx before it reaches the model.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
# All images of one request together: a request that decodes to more is refused before any decoding.
MAX_REQUEST_PIXELS = 64_000_000
MAX_BATCH = 64
# Whole request bodies above this get a 413 before anything reads them (64 small JPEGs as base64 fit many times).
MAX_REQUEST_BYTES = 32 * 1024 * 1024

# Artifact file names: every stage that writes one and every stage that reads it use these.
VALID_TABLE_FILE = "valid.parquet"  # validated rows with their image bytes
QUARANTINE_FILE = "quarantine.csv"
REPORT_FILE = "report.html"  # the HTML report of a validation or an evaluation
DATA_DOCS_FILE = "data_docs.html"  # Great Expectations' Data Docs page
DATASET_MANIFEST_FILE = "dataset_manifest.json"  # provenance: digests of every image and of styles.csv
DEFECTS_FILE = "defects.csv"  # ground truth of the defects injected into a synthetic catalogue
MODEL_CARD_FILE = "model.json"  # fashionrec.training.card.ModelCard
WEIGHTS_FILE = "encoder.pt"  # the trained encoder's state_dict
TRAINING_HISTORY_FILE = "history.json"  # one record per epoch: loss, holdout accuracy, time (the curve, MLflow's history)
CHECKPOINT_FILE = "checkpoint.pt"  # training state after the last finished epoch (KFP retries resume from it)
SERVED_WEIGHTS_FILE = "encoder.safetensors"  # the encoder's weights inside the .mar: no pickle
METRICS_FILE = "metrics.json"  # an evaluation's metrics
CONFUSION_FILE = "confusion.json"
PER_CLASS_FILE = "per_class.json"  # an evaluation's precision@5 per articleType, worst first
PER_QUERY_FILE = "per_query.json"  # an evaluation's precision@5 per query with its product group: the gate pairs them
EMBEDDINGS_FILE = "embeddings.parquet"
FEAST_CONFIG_FILE = "feature_store.yaml"

# Layout of the artifacts that serving consumes.
MAR_FILE = f"{MODEL_NAME}.mar"
MODEL_STORE_DIR = "model-store"
TS_CONFIG_FILE = "config/config.properties"
INDEX_FILE = "items.faiss"
INDEX_META_FILE = "index.json"
ITEM_ATTRIBUTES_FILE = "item_attributes.npz"  # beside the index: each position's filter attributes, family, label
NEIGHBOURHOODS_FILE = "neighbourhoods.npz"  # beside an HNSW index: k-means cells that filtered search scans
# The gate's absolute floor on precision@5 (held-out product groups): no model below it is served, the first one
# included. The default pipeline reaches 0.83 on 15,000 real product photos; a broken model sits near chance.
MIN_PRECISION_AT_5 = 0.5
# The index step picks the fastest FAISS index whose recall@INDEX_RECALL_K against exact search, measured on the
# catalogue's own embeddings, reaches INDEX_RECALL_TARGET (fashionrec.retrieval.calibration).
INDEX_RECALL_TARGET = 0.99
INDEX_RECALL_K = 10
# A serving snapshot's folder layout: a release's serving/ (KServe's /mnt/models), a local live bundle, a canary dir.
SNAPSHOT_INDEX_DIR = "index"
SNAPSHOT_FEATURE_REPO_DIR = "feature_repo"

# Kubernetes Secrets the pipeline's steps read credentials from (kfp-kubernetes; optional: Workload Identity or IRSA
# need none). Never pipeline parameters. Object storage: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (S3, MinIO);
# the model registry: MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN).
STORAGE_SECRET = "fashionrec-storage-credentials"
STORAGE_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
REGISTRY_SECRET = "fashionrec-registry-credentials"
REGISTRY_SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
# Feast's shared stores: feature_store.yaml may name ${FEAST_REDIS_PASSWORD} / ${FEAST_REGISTRY_PASSWORD}.
FEAST_SECRET = "fashionrec-feast-credentials"
# How often a transformer lists the catalogue change log: an added product is searchable within this.
CATALOG_POLL_SECONDS = 2.0
# How often a transformer tests its window of recent image queries for drift (fashionrec.drift.live).
MONITOR_SECONDS = 30.0
# What the monitoring step reads of the request and event logs: the parts (and lines) of the last this many days.
LOG_RETENTION_DAYS = 14.0
# A monitor that decides to retrain at every tick starts one run: none while one is in flight or within this long.
RETRAINING_COOLDOWN_HOURS = 24.0
# The training pipeline's compiled YAML inside the project image (the monitoring pipeline's trigger submits it).
IMAGE_TRAINING_PIPELINE = "/opt/fashionrec/pipelines/compiled/training_pipeline.yaml"
FEAST_SECRET_KEYS = ("FEAST_REDIS_PASSWORD", "FEAST_REGISTRY_PASSWORD")
# Where a catalogue on a PersistentVolumeClaim is mounted in the validate step's pod.
CATALOG_MOUNT = "/mnt/catalog"
# How often Prometheus scrapes the transformers (manifests/monitoring/podmonitor.yaml's interval, held equal by a test):
# the canary check waits for a scrape taken after its probes before it judges them.
SCRAPE_INTERVAL_S = 30.0
# Every local server (TorchServe, the KServe model servers, Redis, the gallery) listens on this address only.
LOOPBACK = "127.0.0.1"
# The gallery (fashionrec.web): `fashionrec web` and `fashionrec serve` open it on this loopback port.
GALLERY_PORT = 8070
PRODUCTION_WEIGHTS = "production"  # TrainConfig.weights: warm-start from the registry's production model
