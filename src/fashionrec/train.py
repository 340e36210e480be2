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
    params = list(encoder.parameters()) + list(classifier.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=total_steps, pct_start=0.15
    )
    generator = torch.Generator().manual_seed(config.seed)
    train_images = torch.from_numpy(images[train_idx])
    train_labels = torch.from_numpy(labels[train_idx])
    console.print(
        f"training {config.backbone} on {device} ({len(train_idx)} train / {len(holdout_idx)} holdout, {len(classes)} classes)"
    )
    started = time.perf_counter()
    loss_value = float("nan")
    with progress_bar() as bar:
        task = bar.add_task("training", total=total_steps, status="")
        for epoch in range(config.epochs):
            encoder.train()
            order = torch.randperm(len(train_idx), generator=generator)
            for step in range(steps_per_epoch):
                batch = order[step * config.batch_size : (step + 1) * config.batch_size]
                if len(batch) < 2:  # batch norm needs two samples
                    bar.advance(task)
                    continue
                x = augment(train_images[batch].to(device), generator)
                y = train_labels[batch].to(device)
                loss = F.cross_entropy(classifier(encoder(x)), y, label_smoothing=0.1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_value = float(loss.detach())
                bar.update(task, advance=1, status=f"epoch {epoch + 1}/{config.epochs} loss {loss_value:.3f}")
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
    model_dir.mkdir(parents=True, exist_ok=True)
    encoder = encoder.cpu().eval()
    weights_path = model_dir / WEIGHTS_FILE
    torch.save(encoder.state_dict(), weights_path)
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
