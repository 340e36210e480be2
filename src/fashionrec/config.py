"""Names, ports and paths that several parts of the system must agree on, defined once."""

from __future__ import annotations

# The InferenceService, the TorchServe model and the transformer share this name: KServe's transformer calls
# /v2/models/<its own --model_name>/infer on the predictor.
MODEL_NAME = "fashionrec"

# Container image for the KFP components and the transformer; the tag is bumped on release.
PROJECT_IMAGE = "ghcr.io/fashionrec/fashionrec:0.1.0"

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
# Attributes served with every recommendation (and stored in Feast).
ATTRIBUTE_COLUMNS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "usage", "productDisplayName")

# Feast names (feature_repo/ uses these through fashionrec.featurestore).
FEAST_ENTITY = "item"
FEAST_JOIN_KEY = "item_id"
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

# Ports as the InferenceService/ServingRuntime expose them inside the pods.
TRANSFORMER_HTTP_PORT = 8080
TRANSFORMER_GRPC_PORT = 8081
TORCHSERVE_INFERENCE_PORT = 8085
TORCHSERVE_MANAGEMENT_PORT = 8086
TORCHSERVE_METRICS_PORT = 8082
TORCHSERVE_GRPC_INFERENCE_PORT = 7070
TORCHSERVE_GRPC_MANAGEMENT_PORT = 7071

# Dynamic batching of the encoder (TorchServe's batch_size/max_batch_delay, and fashionrec.batching in the
# KServe-hosted encoder): requests arriving within the delay share one forward pass of up to this many images.
DYNAMIC_BATCH_SIZE = 8
DYNAMIC_BATCH_DELAY_MS = 5

# Request limits: anything larger is rejected with a 4xx before it reaches the model.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MAX_BATCH = 64
# Whole request bodies above this get a 413 before anything reads them (64 small JPEGs as base64 fit many times).
MAX_REQUEST_BYTES = 32 * 1024 * 1024

# Layout of the artifacts that serving consumes.
MAR_FILE = f"{MODEL_NAME}.mar"
MODEL_STORE_DIR = "model-store"
TS_CONFIG_FILE = "config/config.properties"
INDEX_FILE = "items.faiss"
INDEX_META_FILE = "index.json"
