"""Run parameters, declared once: training (``TrainConfig``) and the pipeline steps around it (``PipelineSettings``).

Each field carries its help text and where it applies. The CLI's ``train`` and ``pipeline run``, the train_encoder
component and the KFP pipeline take their parameters from these dataclasses (``cli_signature``/``kfp_signature``),
so a new parameter is one new field. Choices are enums: ``--help`` lists them and typer and ``from_values`` refuse
anything else.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import Enum, StrEnum
from typing import Annotated, Any, TypeVar, get_type_hints

from fashionrec.config import DEFAULT_IMAGE_SIZE, EMBEDDING_DIM, INDEX_RECALL_TARGET, MIN_PRECISION_AT_5, SCRAPE_INTERVAL_S


class Backbone(StrEnum):
    """torchvision backbones the encoder can be built on."""

    RESNET18 = "resnet18"
    RESNET18_FINE = "resnet18_fine"  # resnet18 without the stem's max-pool: 4x the compute, finer features
    RESNET50 = "resnet50"
    EFFICIENTNET_B0 = "efficientnet_b0"
    MOBILENET_V3_LARGE = "mobilenet_v3_large"


class Device(StrEnum):
    AUTO = "auto"  # the GPU when there is one
    CPU = "cpu"
    CUDA = "cuda"


class Precision(StrEnum):
    AUTO = "auto"  # bf16 on GPUs that have it, else fp16 with a gradient scaler; bf16 on CPUs with native bf16, else fp32
    BF16 = "bf16"
    FP16 = "fp16"
    FP32 = "fp32"


class SplitKind(StrEnum):
    GROUP = "group"  # whole near-duplicate groups and product families on one side (what the gate uses)
    ID = "id"  # each item on its own by a hash of its id: leaks twins across the split; kept for comparison only


class Augmentation(StrEnum):
    LIGHT = "light"  # flips, small shifts, brightness/contrast
    STRONG = "strong"  # + random resized crops, colour casts, some greyscale


class IndexKind(StrEnum):
    AUTO = "auto"  # measured: the fastest that reaches the recall target
    FLAT = "flat"
    HNSW = "hnsw"
    IVF = "ivf"


def parameter(default: Any, help: str, *, pipeline: bool = True, cli: bool = True, gpu_cluster: Any = MISSING) -> Any:
    """A run parameter with its help text; ``pipeline=False``: the CLI has it, the KFP pipeline does not;
    ``cli=False``: only the pipeline on a cluster has it (a local run sets it itself); ``gpu_cluster``: the default
    of the pipeline compiled for GPU clusters, where it differs (a local run passes every value itself)."""
    metadata = {"help": help, "pipeline": pipeline, "cli": cli, "gpu_cluster": gpu_cluster}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# Epochs of the default CPU run: 23 minutes on 2 cores (bf16) for 15,000 products (benchmarks/bench_quality.py).
EPOCHS_CPU = 20
# What a default run may spend training: the planned epochs shrink to fit it (a 39k catalogue on 2 cores).
TIME_BUDGET_MINUTES = 60.0


@dataclass
class TrainConfig:
    backbone: Backbone = parameter(Backbone.RESNET18, "torchvision backbone of the encoder")
    weights: str = parameter(
        "none",
        "none (random), imagenet (downloaded once), a backbone state_dict file, a model folder or production (warm "
        "starts; production: the registry's, random while there is none)",
        gpu_cluster="imagenet",
    )
    embedding_dim: int = parameter(EMBEDDING_DIM, "size of the L2-normalised embedding")
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE  # the encoder's input (height, width): fixed, not a run parameter
    epochs: int = parameter(EPOCHS_CPU, "passes over the training split", gpu_cluster=30)
    time_budget_minutes: float = parameter(
        TIME_BUDGET_MINUTES,
        "training time the schedule must fit: fewer epochs are planned when a short measurement says they would not "
        "fit (large catalogues, slow machines; 0: always the given epochs)",
    )
    batch_size: int = parameter(64, "images per training step")
    learning_rate: float = parameter(2e-3, "peak learning rate of the one-cycle schedule (AdamW)")
    weight_decay: float = parameter(1e-4, "AdamW weight decay")
    holdout_fraction: float = parameter(
        0.2, "share of product groups held out for evaluation and the gate (near-duplicates and colour variants together)"
    )
    holdout_split: SplitKind = parameter(
        SplitKind.GROUP,
        "group: whole product groups on one side; id: per item (leaks twins; for comparison only)",
        pipeline=False,
    )
    margin: float = parameter(0.0, "CosFace margin of the cosine classifiers (0: plain softmax over cosines)")
    auxiliary_weight: float = parameter(
        0.0, "loss weight of the auxiliary heads on masterCategory, subCategory, gender and baseColour (0: none)"
    )
    coclick_weight: float = parameter(
        0.0,
        "loss weight of products shoppers clicked from the same query, pulled together as extra positive pairs "
        "(InfoNCE over a batch of pairs; 0: none, or no pairs given)",
    )
    label_smoothing: float = parameter(
        0.1, "label smoothing of the classification losses: share of each target spread over the other classes (0: none)"
    )
    augmentation: Augmentation = parameter(
        Augmentation.LIGHT, "light: flips, shifts, brightness; strong: + resized crops, colour"
    )
    ema_decay: float = parameter(
        0.0, "exponential moving average of the weights, kept beside them; the model is the average (0: off)"
    )
    keep_best_epoch: bool = parameter(
        True, "keep the epoch with the best holdout accuracy instead of the last (ties go to the later epoch)"
    )
    seed: int = parameter(0, "random seed: the same seed and data give the same model")
    device: Device = parameter(Device.AUTO, "where to train (auto: the GPU when there is one)", pipeline=False)
    precision: Precision = parameter(
        Precision.AUTO, "mixed precision (auto: bf16 where the GPU or CPU runs it natively, else fp16 on GPUs, fp32 on CPUs)"
    )
    channels_last: bool = parameter(True, "channels-last memory layout (faster convolutions)", pipeline=False)
    compile: bool = parameter(False, "torch.compile the encoder (worth it for long GPU runs)")
    resume: bool = parameter(True, "continue from checkpoint.pt when it was written with these settings", pipeline=False)


@dataclass
class PipelineSettings:
    """The pipeline's steps other than training."""

    validation_settings: dict[str, Any] = parameter(
        {}, 'overrides of the validation thresholds (ValidationSettings), e.g. {"min_sharpness": 20}'
    )
    min_improvement: float = parameter(
        0.0, "the gate promotes only if precision@5 beats production by at least this (negative: accepts a drop of up to it)"
    )
    min_precision_at_5: float = parameter(
        MIN_PRECISION_AT_5,
        "absolute floor: the gate rejects a model whose precision@5 on held-out product groups is below it, whether or "
        "not a production model exists",
    )
    gate_guards: dict[str, Any] = parameter(
        {}, 'overrides of the drops the gate tolerates in its guard metrics, e.g. {"ndcg_at_10": 0.02}'
    )
    index_kind: IndexKind = parameter(
        IndexKind.AUTO,
        "FAISS index: auto (the fastest of HNSW, IVF and exact that reaches index_recall_target, measured on the "
        "catalogue's embeddings; exact below 10k items), flat, hnsw, ivf (the smallest search knob that reaches it)",
    )
    index_recall_target: float = parameter(INDEX_RECALL_TARGET, "recall@10 against exact search the index must reach (measured)")
    registry_uri: str = parameter(
        "", "MLflow tracking URI of the model registry, e.g. http://mlflow.mlflow.svc:5000 (empty: no registration)"
    )
    deploy_target: str = parameter(
        "kserve://fashionrec",
        "where the gated model is rolled out: kserve://[NAMESPACE/]NAME (the InferenceService; default namespace: the "
        "run's), local:///WORKDIR, or none (publish the release only)",
        cli=False,
    )
    releases_uri: str = parameter(
        "minio://mlpipeline/fashionrec/releases",
        "model storage for releases (<uri>/<model_version>/, never overwritten): gs://, s3:// or minio:// (KFP's own "
        "MinIO by default); the InferenceService's storage credentials must read it",
        cli=False,
    )
    allow_unregistered_deploy: bool = parameter(
        False,
        "roll out to kserve:// without a model registry (registry_uri empty: no production to compare with, nothing "
        "recorded); refused unless true",
        cli=False,
    )
    canary_percent: int = parameter(10, "share of the traffic (%) the new model answers during the canary check")
    catalog_changes_uri: str = parameter(
        "minio://mlpipeline/fashionrec/catalog-changes",
        "the catalogue change log the transformers apply (their --catalog_changes): products added there since the "
        "training run are encoded by the new model before its transformer loads",
        cli=False,
    )
    online_store: str = parameter(
        "",
        "Feast online store: empty = an embedded sqlite file inside each release; redis://HOST:PORT = one shared Redis "
        "(production; also redis://:${FEAST_REDIS_PASSWORD}@HOST:PORT/DB: a password must be an ${ENV} reference, which "
        "Feast expands from the pod's env; a literal one is refused)",
    )
    feast_registry: str = parameter(
        "", "Feast registry: empty = a file inside each release; a SQLAlchemy URL (postgresql://...) = Feast's SQL registry"
    )
    request_log_uri: str = parameter(
        "",
        "the transformers' --request_log: with event_log_uri, shoppers' logged item queries and clicks are replayed by "
        "the evaluation (reported by the gate) and, with coclick_weight, mined for co-clicked pairs (empty: neither)",
    )
    event_log_uri: str = parameter("", "the transformers' --event_log (shoppers' feedback events; see request_log_uri)")
    prometheus_url: str = parameter(
        "http://prometheus-operated.monitoring.svc:9090",
        "Prometheus that scrapes the transformers (the canary check compares per-version errors and latency)",
        cli=False,
    )
    scrape_interval_s: float = parameter(
        SCRAPE_INTERVAL_S,
        "how often that Prometheus scrapes the transformers (the PodMonitor's interval): the canary check waits for a "
        "scrape taken after its probes, up to 3 intervals",
        cli=False,
    )


@dataclass(frozen=True)
class RunParameter:
    name: str
    type: Any  # int, float, bool, str, dict or an Enum subclass
    default: Any
    help: str
    gpu_cluster_default: Any = MISSING

    @property
    def plain_default(self) -> Any:
        """The default as JSON/KFP sees it (an enum's value)."""
        return self.default.value if isinstance(self.default, Enum) else self.default


Config = TypeVar("Config", TrainConfig, PipelineSettings)


def run_parameters(
    config: type[TrainConfig] | type[PipelineSettings], pipeline: bool = False, cli: bool = False
) -> list[RunParameter]:
    """The run parameters of ``config``, in declaration order (``pipeline``: only those the pipeline has; ``cli``:
    only those the CLI has)."""
    hints = get_type_hints(config)
    found = []
    for f in fields(config):
        if "help" not in f.metadata or (pipeline and not f.metadata["pipeline"]) or (cli and not f.metadata["cli"]):
            continue
        default = f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default
        kind = hints[f.name]
        found.append(
            RunParameter(
                f.name,
                dict if getattr(kind, "__origin__", None) is dict else kind,
                default,
                f.metadata["help"],
                f.metadata.get("gpu_cluster", MISSING),
            )
        )
    return found


def from_values(config: type[Config], values: dict[str, Any], strict: bool = True) -> Config:
    """Build ``config`` from plain values (KFP, JSON, the CLI): enums checked, dicts given as JSON text decoded.
    ``strict``: a name that is not a field is an error; otherwise other names are ignored."""
    known = {p.name: p for p in run_parameters(config)}
    unknown = sorted(set(values) - set(known))
    if unknown and strict:
        raise ValueError(f"unknown {config.__name__} parameter(s) {unknown}; known: {sorted(known)}")
    converted: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            continue
        kind = known[name].type
        if isinstance(kind, type) and issubclass(kind, Enum):
            choices = [c.value for c in kind]
            if str(getattr(value, "value", value)) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
            value = kind(getattr(value, "value", value))
        else:
            value = _coerce(name, kind, value)
        converted[name] = value
    return config(**converted)


_BOOLEANS = {"true": True, "false": False}


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """``value`` as ``kind``. Values that reach a component inside a dict parameter come as text (KFP substitutes
    each pipeline channel into the dict as a string, "16" or "16.0") or as doubles (a protobuf Struct)."""
    problem = ValueError(f"{name} must be a {getattr(kind, '__name__', kind)}, got {value!r}")
    if kind is dict:
        value = json.loads(value or "{}") if isinstance(value, str) else value
        if not isinstance(value, dict):
            raise problem
        return value
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            if value.lower() not in _BOOLEANS:
                raise problem
            return _BOOLEANS[value.lower()]
        try:
            value = float(value)
        except ValueError:
            raise problem from None
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    elif kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise problem
    return value


def plain_values(config: TrainConfig | PipelineSettings, pipeline: bool = False) -> dict[str, Any]:
    """The run parameters of a config as JSON-ready values (enums as strings)."""
    values = asdict(config)
    return {p.name: getattr(values[p.name], "value", values[p.name]) for p in run_parameters(type(config), pipeline)}


Func = TypeVar("Func", bound=Callable[..., Any])


def _with_parameters(func: Func, parameters: list[inspect.Parameter], args_doc: list[str]) -> Func:
    """``func`` (which takes ``**values``) with ``parameters`` after its own named ones, and their help in ``Args:``.

    The wrapper binds whatever its caller passes (KFP's compiler passes every pipeline input positionally) to that
    signature and calls ``func`` by keyword."""
    signature = inspect.signature(func, eval_str=True)  # typer and KFP read annotations as objects, not strings
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    full = signature.replace(parameters=[*own, *parameters])

    @functools.wraps(func)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return func(**full.bind(*args, **kwargs).arguments)

    bound.__signature__ = full  # type: ignore[attr-defined]
    if args_doc:
        doc = inspect.getdoc(func) or ""
        header = "" if "\nArgs:\n" in doc else "\n\nArgs:"  # the function's own Args: section ends its docstring
        bound.__doc__ = f"{doc}{header}\n" + "\n".join(args_doc)
    return bound  # type: ignore[return-value]


def kfp_signature(*configs: type[TrainConfig] | type[PipelineSettings], gpu_cluster: bool = False) -> Callable[[Func], Func]:
    """Decorator for a KFP pipeline function ``f(named..., **values)``: the pipeline parameters of ``configs`` become
    its keyword parameters (plain KFP types: enums are strings) with their help as the descriptions the UI shows.
    ``gpu_cluster``: defaults for a pipeline whose train step gets a GPU (e.g. pretrained weights, more epochs)."""

    def decorate(func: Func) -> Func:
        params, docs = [], []
        for config in configs:
            for p in run_parameters(config, pipeline=True):
                kind = str if isinstance(p.type, type) and issubclass(p.type, Enum) else p.type
                default = p.gpu_cluster_default if gpu_cluster and p.gpu_cluster_default is not MISSING else p.plain_default
                params.append(
                    inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=kind)
                )
                choices = f" One of: {', '.join(c.value for c in p.type)}." if kind is str and p.type is not str else ""
                docs.append(f"    {p.name}: {p.help}.{choices}")
        return _with_parameters(func, params, docs)

    return decorate


def cli_signature(*configs: type[TrainConfig] | type[PipelineSettings]) -> Callable[[Func], Func]:
    """Decorator for a typer command ``f(named..., **values)``: every run parameter of ``configs`` becomes an option
    with its help; enum choices are validated by typer, dicts are JSON text (``from_values`` decodes them)."""
    import typer

    def decorate(func: Func) -> Func:
        params = []
        for config in configs:
            for p in run_parameters(config, cli=True):
                kind, default = (str, json.dumps(p.default)) if p.type is dict else (p.type, p.default)
                option = typer.Option(help=p.help + (" (JSON)" if p.type is dict else ""))
                annotation = Annotated.__class_getitem__((kind, option))  # type: ignore[attr-defined]  # built at run time
                params.append(
                    inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)
                )
        return _with_parameters(func, params, [])

    return decorate
