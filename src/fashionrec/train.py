"""The train stage: fine-tune a CNN encoder on articleType with a cosine-classifier head."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fashionrec.config import DEFAULT_IMAGE_SIZE, EMBEDDING_DIM, LABEL_COLUMN
from fashionrec.dataset import decode_images, is_holdout, read_table
from fashionrec.model import CosineClassifier, Encoder, build_encoder
from fashionrec.progress import console, progress_bar
from fashionrec.provenance import dataset_digest

WEIGHTS_FILE = "encoder.pt"
MODEL_CONFIG_FILE = "model.json"


@dataclass
class TrainConfig:
    backbone: str = "resnet18"
    weights: str = "none"  # "none" | "imagenet" | path to a local backbone state_dict
    embedding_dim: int = EMBEDDING_DIM
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    holdout_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"  # "auto" picks cuda when present
    precision: str = "auto"  # auto (bf16 on GPUs that have it, else fp16 with a scaler; fp32 on CPU) | bf16 | fp16 | fp32
    channels_last: bool = True
    compile: bool = False  # torch.compile the encoder (worth it for long GPU runs)
    resume: bool = True  # continue from model_dir/checkpoint.pt when it matches this config (KFP retries)


@dataclass
class ModelCard:
    """What serving and later stages need to know about a trained encoder; stored as model.json."""

    model_version: str
    backbone: str
    embedding_dim: int
    image_size: tuple[int, int]
    classes: list[str]
    dataset_digest: str
    metrics: dict[str, float] = field(default_factory=dict)

    def save(self, model_dir: Path) -> None:
        (model_dir / MODEL_CONFIG_FILE).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, model_dir: Path) -> ModelCard:
        data = json.loads((model_dir / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
        data["image_size"] = tuple(data["image_size"])
        return cls(**data)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The mixed-precision dtype for this device, or None for plain fp32."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    if precision in ("fp16", "auto"):
        return torch.float16
    raise ValueError(f"unknown precision {precision!r}: auto | bf16 | fp16 | fp32")


CHECKPOINT_FILE = "checkpoint.pt"
# A checkpoint is only resumed by a run with the same values of these settings.
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
    "seed",
)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Batch augmentation on whatever device the batch is on: flips, small shifts, brightness/contrast jitter."""
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


@torch.no_grad()
def embed_array(encoder: Encoder, images: np.ndarray, device: torch.device, batch_size: int = 256) -> np.ndarray:
    encoder.eval()
    chunks = [
        encoder(torch.from_numpy(images[i : i + batch_size]).to(device)).float().cpu() for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, encoder.head.out_features), dtype=np.float32)


def train(valid_catalog: Path, model_dir: Path, config: TrainConfig) -> ModelCard:
    """Train an encoder on the validated catalogue; write encoder.pt (state_dict) and model.json into model_dir."""
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    table = read_table(valid_catalog)
    classes = sorted(table[LABEL_COLUMN].astype(str).unique())
    if len(classes) < 2:
        raise ValueError(f"training needs at least 2 classes of {LABEL_COLUMN}, found {classes}")
    labels = table[LABEL_COLUMN].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    images = decode_images(table["image"], config.image_size)
    held_out = is_holdout(table["id"], config.holdout_fraction)
    train_idx, holdout_idx = np.flatnonzero(~held_out), np.flatnonzero(held_out)

    encoder = build_encoder(config.backbone, config.weights, config.embedding_dim).to(device)
    classifier = CosineClassifier(config.embedding_dim, len(classes)).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    encoder = encoder.to(memory_format=memory_format)
    params = list(encoder.parameters()) + list(classifier.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=total_steps, pct_start=0.15
    )
    dtype = autocast_dtype(device, config.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    generator = torch.Generator().manual_seed(config.seed)
    # The decoded catalogue stays on the device as uint8 (4x smaller than float); batches are cut and augmented there.
    train_images = torch.from_numpy(images[train_idx]).to(device)
    train_labels = torch.from_numpy(labels[train_idx]).to(device)
    forward = torch.compile(encoder) if config.compile else encoder
    model_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = model_dir / CHECKPOINT_FILE
    resume_key = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items() if k in RESUME_KEYS} | {
        "classes": classes
    }
    first_epoch = 0
    if config.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if state["key"] == resume_key:
            encoder.load_state_dict(state["encoder"])
            classifier.load_state_dict(state["classifier"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            generator.set_state(state["generator"])
            first_epoch = int(state["epoch"])
            console.print(f"resuming from {checkpoint_path} after epoch {first_epoch}")
        else:
            console.print(f"[yellow]ignoring {checkpoint_path}: it was written with other settings[/yellow]")
    console.print(
        f"training {config.backbone} on {device} ({len(train_idx)} train / {len(holdout_idx)} holdout, {len(classes)} classes, "
        f"{'fp32' if dtype is None else str(dtype).removeprefix('torch.')})"
    )
    started = time.perf_counter()
    loss_value = float("nan")
    with progress_bar() as bar:
        task = bar.add_task("training", total=total_steps, completed=first_epoch * steps_per_epoch, status="")
        for epoch in range(first_epoch, config.epochs):
            encoder.train()
            order = torch.randperm(len(train_idx), generator=generator)
            for step in range(steps_per_epoch):
                batch = order[step * config.batch_size : (step + 1) * config.batch_size].to(device)
                if len(batch) < 2:  # batch norm needs two samples
                    bar.advance(task)
                    continue
                x = augment(train_images[batch], generator).contiguous(memory_format=memory_format)
                with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = F.cross_entropy(classifier(forward(x)).float(), train_labels[batch], label_smoothing=0.1)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_value = float(loss.detach())
                bar.update(task, advance=1, status=f"epoch {epoch + 1}/{config.epochs} loss {loss_value:.3f}")
            torch.save(
                {
                    "key": resume_key,
                    "epoch": epoch + 1,
                    "encoder": encoder.state_dict(),
                    "classifier": classifier.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "generator": generator.get_state(),
                },
                checkpoint_path,
            )
    seconds = time.perf_counter() - started
    metrics = {
        "train_loss": loss_value,
        "train_seconds": seconds,
        "train_images_per_second": len(train_idx) * config.epochs / seconds,
    }
    if len(holdout_idx):
        encoder.eval()
        with torch.no_grad():
            holdout_embeddings = torch.from_numpy(embed_array(encoder, images[holdout_idx], device)).to(device)
            predicted = classifier(holdout_embeddings).argmax(1).cpu().numpy()
        metrics["holdout_accuracy"] = float((predicted == labels[holdout_idx]).mean())
    encoder = encoder.cpu().to(memory_format=torch.contiguous_format).eval()
    weights_path = model_dir / WEIGHTS_FILE
    torch.save({k: v.contiguous() for k, v in encoder.state_dict().items()}, weights_path)
    checkpoint_path.unlink(missing_ok=True)  # the finished model replaces it
    card = ModelCard(
        model_version=hashlib.sha256(weights_path.read_bytes()).hexdigest()[:12],
        backbone=config.backbone,
        embedding_dim=config.embedding_dim,
        image_size=config.image_size,
        classes=classes,
        dataset_digest=dataset_digest(table),
        metrics=metrics,
    )
    card.save(model_dir)
    return card


def load_encoder(model_dir: Path) -> tuple[Encoder, ModelCard]:
    """Rebuild a trained encoder from model.json + encoder.pt (weights_only: no pickle)."""
    card = ModelCard.load(model_dir)
    encoder = build_encoder(card.backbone, "none", card.embedding_dim)
    encoder.load_state_dict(torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return encoder.eval(), card
