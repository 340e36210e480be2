"""The train stage: fine-tune a CNN encoder on articleType with a cosine-classifier head."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from fashionrec.config import (
    AUXILIARY_LABEL_COLUMNS,
    CHECKPOINT_FILE,
    LABEL_COLUMN,
    MODEL_CARD_FILE,
    PRODUCTION_WEIGHTS,
    TRAINING_HISTORY_FILE,
    WEIGHTS_FILE,
)
from fashionrec.console import console, progress_bar
from fashionrec.data.provenance import dataset_digest
from fashionrec.data.split import holdout_mask
from fashionrec.data.table import decode_images, read_table
from fashionrec.params import Augmentation, TrainConfig, plain_values
from fashionrec.training.card import ModelCard
from fashionrec.training.model import CosineClassifier, Encoder, build_encoder
from fashionrec.training.registry import MlflowRegistry, production_model_dir


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(str(requested))


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX): there, bf16 autocast trains ~1.6x faster."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The mixed-precision dtype for this device, or None for plain fp32."""
    if precision == "auto" and device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    if precision in ("fp16", "auto"):
        return torch.float16
    raise ValueError(f"unknown precision {precision!r}: auto | bf16 | fp16 | fp32")


PAIR_BATCH_DIVISOR = 4  # co-clicked pairs per step: a quarter of the batch size (both sides: half a batch more images)
PAIR_TEMPERATURE = 0.1

# A checkpoint is only resumed by a run with the same values of these settings.
OPTIMIZER_STEP_ALLOWANCE = 1.1  # a timed step is forward + backward; AdamW's update and the data path add ~10%
HOLDOUT_TIMING_IMAGES = 256  # held-out photos embedded to time the per-epoch holdout score

RESUME_KEYS = (
    "backbone",
    "weights",
    "embedding_dim",
    "image_size",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "holdout_fraction",
    "holdout_split",
    "margin",
    "auxiliary_weight",
    "augmentation",
    "ema_decay",
    "keep_best_epoch",
    "seed",
)


def augment(images: torch.Tensor, generator: torch.Generator, strength: Augmentation = Augmentation.LIGHT) -> torch.Tensor:
    """Batch augmentation on whatever device the batch is on: flips, small shifts, brightness/contrast jitter;
    ``strong`` adds per-image random resized crops, colour casts and some greyscale (the catalogue has grey JPEGs)."""
    if strength == Augmentation.STRONG:
        return _strong_augment(images, generator)
    n, _, h, w = images.shape
    x = images.float()
    flip = torch.rand(n, generator=generator, device="cpu").to(x.device) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    pad = max(2, h // 16)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy, dx = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=generator))
    x = padded[:, :, dy : dy + h, dx : dx + w]
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5).to(x.device) * 0.4
    bias = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5).to(x.device) * 40
    return (x * gain + bias).clamp(0, 255)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _strong_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = images.shape[0]
    zoom = _uniform(n, 0.7, 1.0, generator)  # side of the crop, as a share of the image
    aspect = torch.exp(_uniform(n, -0.15, 0.15, generator))
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    sx, sy = zoom * aspect.sqrt() * flip, zoom / aspect.sqrt()
    tx, ty = _uniform(n, -1, 1, generator) * (1 - zoom), _uniform(n, -1, 1, generator) * (1 - zoom)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, tx, sy, ty
    x = images.float()
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = (_uniform(n, 0.75, 1.25, generator)[:, None] * _uniform(3 * n, 0.9, 1.1, generator).view(n, 3)).to(x.device)
    bias = _uniform(n, -20, 20, generator).to(x.device)
    x = x * gain[:, :, None, None] + bias[:, None, None, None]
    grey = (torch.rand(n, generator=generator) < 0.1).to(x.device)
    x = torch.where(grey.view(n, 1, 1, 1), x.mean(1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 255)


@torch.no_grad()
def embed_array(encoder: Encoder, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    encoder.eval()
    chunks = [
        encoder(torch.from_numpy(images[i : i + batch_size]).to(device)).float().cpu() for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, encoder.head.out_features), dtype=np.float32)


@dataclass
class TrainingData:
    """The validated catalogue decoded for training: labels, the split, and the training part on the device."""

    table: Any  # pandas DataFrame of the valid rows
    classes: list[str]
    labels: np.ndarray
    images: np.ndarray  # uint8 [n, 3, h, w]
    train_idx: np.ndarray
    holdout_idx: np.ndarray
    auxiliary: dict[str, tuple[list[str], np.ndarray]]  # column -> its classes, each row's class (-1: missing)
    pairs: np.ndarray  # [p, 2] co-clicked pairs as positions in train_idx (both products in the training split)


def load_training_data(valid_catalog: Path, config: TrainConfig, coclicks: list[tuple[int, int]] | None = None) -> TrainingData:
    table = read_table(valid_catalog)
    classes = sorted(table[LABEL_COLUMN].astype(str).unique())
    if len(classes) < 2:
        raise ValueError(f"training needs at least 2 classes of {LABEL_COLUMN}, found {classes}")
    labels = table[LABEL_COLUMN].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    auxiliary = {}
    for column in AUXILIARY_LABEL_COLUMNS if config.auxiliary_weight > 0 else ():
        values = table[column].where(table[column].notna() & (table[column].astype(str) != ""))
        column_classes = sorted(values.dropna().astype(str).unique())
        if len(column_classes) >= 2:
            codes = values.map({c: i for i, c in enumerate(column_classes)}).fillna(-1).astype(np.int64).to_numpy()
            auxiliary[column] = (column_classes, codes)
    images = decode_images(table["image"], config.image_size)
    held_out = holdout_mask(table, config.holdout_fraction, config.holdout_split)
    train_idx = np.flatnonzero(~held_out)
    pairs = training_pairs(table["id"].astype(int).to_numpy()[train_idx], coclicks or []) if config.coclick_weight > 0 else None
    return TrainingData(
        table, classes, labels, images, train_idx, np.flatnonzero(held_out), auxiliary,
        pairs if pairs is not None else np.empty((0, 2), dtype=np.int64),
    )  # fmt: skip


def training_pairs(train_ids: np.ndarray, coclicks: list[tuple[int, int]]) -> np.ndarray:
    """Co-clicked pairs whose two products are both in the training split, as positions in it: a pair touching a
    held-out product would teach the model the evaluation's answers."""
    position = {int(item): n for n, item in enumerate(train_ids)}
    kept = [(position[a], position[b]) for a, b in coclicks if a in position and b in position and a != b]
    return np.asarray(kept, dtype=np.int64).reshape(-1, 2)


@dataclass
class EpochRecord:
    """One finished epoch, as the progress lines, the KFP curve and MLflow's metric history show it."""

    epoch: int  # 1-based
    loss: float  # of the epoch's last step
    seconds: float  # since training started (this run's share: a resumed run counts from its resume)
    images_per_second: float  # of the epoch's training steps alone
    holdout_accuracy: float = float("nan")  # the candidate's cosine classifier on the held-out items (nan: no holdout)


def history_row(record: EpochRecord) -> dict[str, float | None]:
    """One line of history.json: strict JSON, so a missing holdout accuracy is null, not NaN."""
    return {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in asdict(record).items()}


@dataclass
class KeptEpoch:
    epoch: int
    holdout_accuracy: float
    encoder: dict[str, torch.Tensor]  # its weights, on the CPU (empty: the last epoch is kept, no copy needed)


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def moving_average(encoder: Encoder, classifier: CosineClassifier, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of the encoder and classifier weights (batch-norm statistics too)."""
    if decay <= 0:
        return None
    if decay >= 1:
        raise ValueError(f"ema_decay must be below 1, got {decay}")
    modules = torch.nn.ModuleList([encoder, classifier])
    return torch.optim.swa_utils.AveragedModel(
        modules, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True
    )


def initial_encoder(config: TrainConfig, warm_from: Path | None = None) -> Encoder:
    """The encoder training starts from. A trained model's folder (model.json + encoder.pt), as ``warm_from`` or as
    ``config.weights``, is a warm start of the whole encoder, embedding head included; weights=production without a
    folder (nothing in production yet) is a random start; anything else is build_encoder's (random, ImageNet, a
    backbone file)."""
    folder = warm_from or Path(config.weights)
    if warm_from is not None or (config.weights not in ("none", "imagenet") and (folder / MODEL_CARD_FILE).is_file()):
        card = ModelCard.load(folder)
        if (card.backbone, card.embedding_dim) != (str(config.backbone), config.embedding_dim):
            raise ValueError(
                f"cannot warm-start a {config.backbone} with {config.embedding_dim}-d embeddings from {folder}: it is a "
                f"{card.backbone} with {card.embedding_dim}-d embeddings"
            )
        encoder = build_encoder(config.backbone, "none", config.embedding_dim)
        encoder.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        console.print(f"warm start from model {card.model_version} ({folder})", soft_wrap=True, markup=False)
        return encoder
    weights = "none" if config.weights == PRODUCTION_WEIGHTS else config.weights
    return build_encoder(config.backbone, weights, config.embedding_dim)


@contextlib.contextmanager
def production_weights(config: TrainConfig, registry_uri: str) -> Iterator[Path | None]:
    """weights=production: the registry's production model, downloaded for the duration of training (None while
    nothing is in production: the first model starts from random weights). Any other weights: None."""
    if config.weights != PRODUCTION_WEIGHTS:
        yield None
        return
    if not registry_uri:
        raise ValueError("weights=production needs the model registry's URI (registry_uri)")
    with tempfile.TemporaryDirectory(prefix="fashionrec-warm-start-") as scratch:
        folder = production_model_dir(MlflowRegistry(registry_uri), Path(scratch))
        if folder is None:
            console.print("weights=production: nothing is in production yet, training starts from random weights")
        yield folder


def format_duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{rest:02d}" if minutes >= 60 else f"{minutes}:{rest:02d}"


def progress_line(record: EpochRecord, epochs: int, first_epoch: int, best_so_far: bool) -> str:
    """What a person watching the step reads after each epoch (the local runner relays these lines)."""
    done = record.epoch - first_epoch
    left = record.seconds / max(done, 1) * (epochs - record.epoch)
    accuracy = "" if math.isnan(record.holdout_accuracy) else f", holdout accuracy {record.holdout_accuracy:.3f}"
    kept = " (best so far)" if best_so_far and accuracy else ""
    return (
        f"epoch {record.epoch}/{epochs}: loss {record.loss:.3f}{accuracy}{kept}, {record.images_per_second:.0f} images/s, "
        f"{format_duration(record.seconds)} elapsed, about {format_duration(left)} left"
    )


EpochHook = Callable[["Trainer", EpochRecord], None]


@dataclass
class Trainer:
    """Everything one training run updates, built in a fixed order so that a seed fixes the result."""

    config: TrainConfig
    device: torch.device
    encoder: Encoder
    classifier: CosineClassifier
    auxiliary_heads: torch.nn.ModuleDict  # column -> its cosine classifier (empty: auxiliary_weight 0)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    dtype: torch.dtype | None
    memory_format: torch.memory_format
    steps_per_epoch: int
    train_images: torch.Tensor  # uint8, resident on the device (4x smaller than float); batches are cut there
    train_labels: torch.Tensor
    train_auxiliary: dict[str, torch.Tensor]
    train_pairs: torch.Tensor  # [p, 2] positions in train_images of co-clicked products (empty: no pair loss)
    forward: Any  # the encoder, or its torch.compile'd form
    ema: torch.optim.swa_utils.AveragedModel | None  # the moving average of encoder + classifier (None: ema_decay 0)
    history: list[EpochRecord] = field(default_factory=list)
    best: KeptEpoch | None = None  # the epoch kept so far (keep_best_epoch), its weights on the CPU
    warm_start_version: str = ""  # the model weights=production started from ("" for any other start)

    @classmethod
    def build(cls, config: TrainConfig, data: TrainingData, device: torch.device, warm_from: Path | None = None) -> Trainer:
        encoder = initial_encoder(config, warm_from).to(device)
        classifier = CosineClassifier(config.embedding_dim, len(data.classes), margin=config.margin).to(device)
        auxiliary_heads = torch.nn.ModuleDict(
            {
                c: CosineClassifier(config.embedding_dim, len(classes), margin=config.margin)
                for c, (classes, _) in data.auxiliary.items()
            }
        ).to(device)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        encoder = encoder.to(memory_format=memory_format)
        params = list(encoder.parameters()) + list(classifier.parameters()) + list(auxiliary_heads.parameters())
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        steps_per_epoch = max(1, math.ceil(len(data.train_idx) / config.batch_size))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.learning_rate, total_steps=steps_per_epoch * config.epochs, pct_start=0.15
        )
        dtype = autocast_dtype(device, config.precision)
        return cls(
            config=config,
            device=device,
            encoder=encoder,
            classifier=classifier,
            auxiliary_heads=auxiliary_heads,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=torch.amp.GradScaler(device.type, enabled=dtype == torch.float16),
            generator=torch.Generator().manual_seed(config.seed),
            dtype=dtype,
            memory_format=memory_format,
            steps_per_epoch=steps_per_epoch,
            train_images=torch.from_numpy(data.images[data.train_idx]).to(device),
            train_labels=torch.from_numpy(data.labels[data.train_idx]).to(device),
            train_auxiliary={c: torch.from_numpy(codes[data.train_idx]).to(device) for c, (_, codes) in data.auxiliary.items()},
            train_pairs=torch.from_numpy(data.pairs),
            forward=torch.compile(encoder) if config.compile else encoder,
            ema=moving_average(encoder, classifier, config.ema_decay),
            warm_start_version=ModelCard.load(warm_from).model_version if warm_from is not None else "",
        )

    def run_epoch(self, epoch: int, advance: Any) -> float:
        """One pass over the training split in a seeded random order; ``advance(status)`` after every step."""
        config = self.config
        self.encoder.train()
        order = torch.randperm(len(self.train_images), generator=self.generator)
        loss_value = float("nan")
        for step in range(self.steps_per_epoch):
            batch = order[step * config.batch_size : (step + 1) * config.batch_size].to(self.device)
            if len(batch) < 2:  # batch norm needs two samples
                advance(None)
                continue
            x = augment(self.train_images[batch], self.generator, config.augmentation).contiguous(
                memory_format=self.memory_format
            )
            with torch.autocast(device_type=self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                embeddings = self.forward(x)
                labels = self.train_labels[batch]
                loss = F.cross_entropy(
                    self.classifier(embeddings, labels).float(), labels, label_smoothing=config.label_smoothing
                )
                for column, head in self.auxiliary_heads.items():
                    codes = self.train_auxiliary[column][batch]
                    if bool((codes >= 0).any()):
                        logits = head(embeddings, codes).float()
                        loss = loss + config.auxiliary_weight * F.cross_entropy(
                            logits, codes, ignore_index=-1, label_smoothing=config.label_smoothing
                        )
                if config.coclick_weight > 0 and len(self.train_pairs) >= 2:
                    loss = loss + config.coclick_weight * self.pair_loss()
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(torch.nn.ModuleList([self.encoder, self.classifier]))
            loss_value = float(loss.detach())
            advance(f"epoch {epoch + 1}/{config.epochs} loss {loss_value:.3f}")
        return loss_value

    def pair_loss(self) -> torch.Tensor:
        """InfoNCE over a batch of co-clicked pairs: each product's partner is its positive, the other pairs'
        products its negatives (both directions)."""
        size = min(len(self.train_pairs), max(2, self.config.batch_size // PAIR_BATCH_DIVISOR))
        chosen = self.train_pairs[torch.randperm(len(self.train_pairs), generator=self.generator)[:size]].to(self.device)
        images = self.train_images[torch.cat([chosen[:, 0], chosen[:, 1]])]
        x = augment(images, self.generator, self.config.augmentation).contiguous(memory_format=self.memory_format)
        left, right = self.forward(x).float().split(size)
        logits = left @ right.T / PAIR_TEMPERATURE
        targets = torch.arange(size, device=logits.device)
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    def candidate(self) -> tuple[Encoder, CosineClassifier]:
        """The model an epoch offers: the moving average when there is one, else the weights themselves."""
        if self.ema is not None:
            averaged = cast(torch.nn.ModuleList, self.ema.module)
            return cast(Encoder, averaged[0]), cast(CosineClassifier, averaged[1])
        return self.encoder, self.classifier

    def estimated_epoch_seconds(self, data: TrainingData, steps: int = 3) -> float:
        """Seconds one epoch will take here: a few training steps and a holdout batch timed on copies of the model
        (the run's own weights, statistics and random streams are untouched)."""
        encoder, classifier = copy.deepcopy(self.encoder).train(), copy.deepcopy(self.classifier)
        size = min(self.config.batch_size, len(self.train_images))
        x = augment(self.train_images[:size], torch.Generator().manual_seed(0), self.config.augmentation)
        x, labels = x.contiguous(memory_format=self.memory_format), self.train_labels[:size]

        def step() -> None:
            with torch.autocast(device_type=self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                loss = F.cross_entropy(classifier(encoder(x), labels).float(), labels)
            loss.backward()
            float(loss.detach())  # waits for the device
            encoder.zero_grad(set_to_none=True)
            classifier.zero_grad(set_to_none=True)

        step()  # the first step allocates and picks kernels: not timed
        started = time.perf_counter()
        for _ in range(steps):
            step()
        step_seconds = (time.perf_counter() - started) / steps * OPTIMIZER_STEP_ALLOWANCE
        holdout = data.images[data.holdout_idx[:HOLDOUT_TIMING_IMAGES]]
        started = time.perf_counter()
        if len(holdout):
            embed_array(encoder.eval(), holdout, self.device)
        holdout_seconds = (time.perf_counter() - started) * len(data.holdout_idx) / max(len(holdout), 1)
        return step_seconds * self.steps_per_epoch + holdout_seconds

    def holdout_accuracy(self, data: TrainingData) -> float:
        """Accuracy of the candidate's cosine classifier on the held-out items."""
        encoder, classifier = self.candidate()
        encoder.eval()
        with torch.no_grad():
            embeddings = torch.from_numpy(embed_array(encoder, data.images[data.holdout_idx], self.device)).to(self.device)
            predicted = classifier(embeddings).argmax(1).cpu().numpy()
        return float((predicted == data.labels[data.holdout_idx]).mean())

    def end_epoch(self, data: TrainingData, record: EpochRecord) -> None:
        """Score the epoch's candidate on the holdout, log it, and keep its weights when it is the best so far."""
        if len(data.holdout_idx):
            record.holdout_accuracy = self.holdout_accuracy(data)
        self.history.append(record)
        if not self.config.keep_best_epoch or math.isnan(record.holdout_accuracy):
            self.best = KeptEpoch(record.epoch, record.holdout_accuracy, {})  # the last epoch: nothing to copy
        elif self.best is None or record.holdout_accuracy >= self.best.holdout_accuracy:
            encoder, _ = self.candidate()
            self.best = KeptEpoch(record.epoch, record.holdout_accuracy, cpu_state(encoder))

    def kept_encoder(self) -> Encoder:
        """The encoder to write: the kept epoch's weights (the last epoch's when keep_best_epoch is off)."""
        encoder, _ = self.candidate()
        if self.best is not None and self.best.encoder:
            encoder.load_state_dict(self.best.encoder)
        return encoder

    # Checkpoints: after every epoch, so that a retried KFP step resumes instead of starting over.
    def resume_key(self, classes: list[str]) -> dict[str, Any]:
        """What a checkpoint must have been written with to be resumed by this run."""
        values = plain_values(self.config) | {"image_size": list(self.config.image_size)}
        resumed_only_by = {k: v for k, v in values.items() if k in RESUME_KEYS} | {"classes": classes}
        # weights=production names whichever model is in production: a retry after a promotion starts over
        return resumed_only_by | ({"warm_start": self.warm_start_version} if self.warm_start_version else {})

    def save_checkpoint(self, path: Path, key: dict[str, Any], epochs_done: int) -> None:
        state = {
            "key": key,
            "epoch": epochs_done,
            "encoder": self.encoder.state_dict(),
            "classifier": self.classifier.state_dict(),
            "auxiliary_heads": self.auxiliary_heads.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "history": json.dumps([asdict(r) for r in self.history]),
            "best": {"epoch": self.best.epoch, "holdout_accuracy": self.best.holdout_accuracy, "encoder": self.best.encoder}
            if self.best is not None
            else {},
        }
        # Written aside, then renamed: a pre-emption mid-write leaves the previous checkpoint intact.
        partial = path.with_name(f".{path.name}.partial")
        torch.save(state, partial)
        os.replace(partial, path)

    def resume(self, path: Path, key: dict[str, Any]) -> int:
        """Load ``path`` when it was written with ``key``; return the number of epochs it had finished (0: none)."""
        if not (self.config.resume and path.is_file()):
            return 0
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: torch raises RuntimeError, EOFError, pickle errors...
            console.print(f"[yellow]ignoring {path}: it cannot be read ({type(exc).__name__}); training from scratch[/yellow]")
            return 0
        if not isinstance(state, dict) or state.get("key") != key:
            console.print(f"[yellow]ignoring {path}: it was written with other settings[/yellow]")
            return 0
        self.encoder.load_state_dict(state["encoder"])
        self.classifier.load_state_dict(state["classifier"])
        self.auxiliary_heads.load_state_dict(state["auxiliary_heads"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.history = [EpochRecord(**r) for r in json.loads(state["history"])]
        if state["best"]:
            best = state["best"]
            self.best = KeptEpoch(int(best["epoch"]), float(best["holdout_accuracy"]), best["encoder"])
        console.print(f"resuming from {path} after epoch {int(state['epoch'])}")
        return int(state["epoch"])


def write_model(
    encoder: Encoder, model_dir: Path, config: TrainConfig, data: TrainingData, metrics: dict[str, float]
) -> ModelCard:
    """encoder.pt (a plain state_dict, CPU, contiguous) and model.json; the version is the weights' digest."""
    encoder = encoder.cpu().to(memory_format=torch.contiguous_format).eval()
    weights_path = model_dir / WEIGHTS_FILE
    torch.save({k: v.contiguous() for k, v in encoder.state_dict().items()}, weights_path)
    card = ModelCard(
        model_version=hashlib.sha256(weights_path.read_bytes()).hexdigest()[:12],
        backbone=str(config.backbone),
        embedding_dim=config.embedding_dim,
        image_size=config.image_size,
        classes=data.classes,
        dataset_digest=dataset_digest(data.table),
        metrics=metrics,
    )
    card.save(model_dir)
    return card


def train(
    valid_catalog: Path,
    model_dir: Path,
    config: TrainConfig,
    coclicks: list[tuple[int, int]] | None = None,
    on_epoch: EpochHook | None = None,
    registry_uri: str = "",
) -> ModelCard:
    """Train an encoder on the validated catalogue; write encoder.pt (state_dict), model.json and history.json (one
    record per epoch) into model_dir. ``coclicks``: product pairs shoppers clicked from the same query
    (fashionrec.engagement.replay), used when ``config.coclick_weight`` is above 0. ``on_epoch(trainer, record)``
    after every epoch (benchmarks snapshot the weights there). ``registry_uri``: where weights=production finds the
    production model."""
    with production_weights(config, registry_uri) as warm_from:
        return train_from(valid_catalog, model_dir, config, coclicks, on_epoch, warm_from)


def train_from(
    valid_catalog: Path,
    model_dir: Path,
    config: TrainConfig,
    coclicks: list[tuple[int, int]] | None,
    on_epoch: EpochHook | None,
    warm_from: Path | None,
) -> ModelCard:
    """train() once the warm start, if any, is a local folder."""
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    data = load_training_data(valid_catalog, config, coclicks)
    trainer = Trainer.build(config, data, device, warm_from)
    model_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = model_dir / CHECKPOINT_FILE
    requested_epochs = config.epochs
    planned = planned_epochs(trainer, data, checkpoint_path)
    if planned < config.epochs:
        config = replace(config, epochs=planned)
        torch.manual_seed(config.seed)  # the same start as a run asked for these epochs
        trainer = Trainer.build(config, data, device, warm_from)
    key = trainer.resume_key(data.classes)
    first_epoch = trainer.resume(checkpoint_path, key)
    console.print(
        f"training {config.backbone} on {device} ({len(data.train_idx)} train / {len(data.holdout_idx)} holdout, "
        f"{len(data.classes)} classes, {'fp32' if trainer.dtype is None else str(trainer.dtype).removeprefix('torch.')})"
    )
    started = time.perf_counter()
    step_seconds = 0.0
    loss_value = float("nan")
    with progress_bar() as bar:
        total = trainer.steps_per_epoch * config.epochs
        task = bar.add_task("training", total=total, completed=first_epoch * trainer.steps_per_epoch, status="")

        def advance(status: str | None) -> None:
            if status is None:
                bar.advance(task)
            else:
                bar.update(task, advance=1, status=status)

        for epoch in range(first_epoch, config.epochs):
            epoch_started = time.perf_counter()
            loss_value = trainer.run_epoch(epoch, advance)
            epoch_seconds = time.perf_counter() - epoch_started
            step_seconds += epoch_seconds
            record = EpochRecord(epoch + 1, loss_value, 0.0, len(data.train_idx) / max(epoch_seconds, 1e-9))
            trainer.end_epoch(data, record)
            record.seconds = time.perf_counter() - started
            best_so_far = config.keep_best_epoch and trainer.best is not None and trainer.best.epoch == record.epoch
            console.print(progress_line(record, config.epochs, first_epoch, best_so_far), soft_wrap=True)  # one line: relayed
            if on_epoch is not None:
                on_epoch(trainer, record)
            trainer.save_checkpoint(checkpoint_path, key, epoch + 1)
    seconds = time.perf_counter() - started
    epochs_run = config.epochs - first_epoch
    metrics = {
        "epochs_requested": float(requested_epochs),
        "epochs_planned": float(config.epochs),  # fewer when the time budget cut the schedule
        "train_coclick_pairs": float(len(data.pairs)),
        "train_loss": loss_value,
        "train_seconds": seconds,
        "train_images_per_second": len(data.train_idx) * epochs_run / max(step_seconds, 1e-9),
    }
    if trainer.best is not None:
        metrics["kept_epoch"] = float(trainer.best.epoch)
        if len(data.holdout_idx):
            metrics["holdout_accuracy"] = trainer.best.holdout_accuracy
    elif len(data.holdout_idx):  # epochs=0: no epoch ran, so none was scored or kept
        metrics["holdout_accuracy"] = trainer.holdout_accuracy(data)
    card = write_model(trainer.kept_encoder(), model_dir, config, data, metrics)
    (model_dir / TRAINING_HISTORY_FILE).write_text(json.dumps([history_row(r) for r in trainer.history], indent=1))
    checkpoint_path.unlink(missing_ok=True)  # the finished model replaces it
    return card


def planned_epochs(trainer: Trainer, data: TrainingData, checkpoint_path: Path) -> int:
    """The epochs this run trains: the configured ones, or as many as fit ``time_budget_minutes`` by a short
    measurement. A checkpoint of the same run keeps the epochs it planned, so a retry resumes it."""
    config = trainer.config
    if config.time_budget_minutes <= 0 or config.epochs <= 1:
        return config.epochs
    written = checkpoint_key(checkpoint_path) if config.resume else None
    key = trainer.resume_key(data.classes)
    if (
        written is not None
        and 1 <= int(written.get("epochs", 0)) <= config.epochs
        and written == key | {"epochs": written["epochs"]}
    ):
        return int(written["epochs"])
    epoch_seconds = trainer.estimated_epoch_seconds(data)
    fit = max(1, int(config.time_budget_minutes * 60 // max(epoch_seconds, 1e-9)))
    if fit < config.epochs:
        console.print(
            f"time budget {config.time_budget_minutes:g} min: {fit} of {config.epochs} epochs fit "
            f"(about {format_duration(epoch_seconds)} each here, measured); the schedule is planned for {fit}"
        )
    return min(fit, config.epochs)


def checkpoint_key(path: Path) -> dict[str, Any] | None:
    """The settings a checkpoint was written with, or None when there is none that can be read."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: resume() says so and starts over
        return None
    key = state.get("key") if isinstance(state, dict) else None
    return key if isinstance(key, dict) else None


def load_encoder(model_dir: Path) -> tuple[Encoder, ModelCard]:
    """Rebuild a trained encoder from model.json + encoder.pt (weights_only: no pickle)."""
    card = ModelCard.load(model_dir)
    encoder = build_encoder(card.backbone, "none", card.embedding_dim)
    encoder.load_state_dict(torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return encoder.eval(), card
