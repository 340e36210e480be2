"""The image encoder: a torchvision backbone with an L2-normalised embedding head."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from fashionrec.config import EMBEDDING_DIM

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _resnet(
    factory: Callable[..., nn.Module], weights_enum: object, keep_resolution: bool = False
) -> Callable[[object], tuple[nn.Module, int]]:
    """``keep_resolution``: no max-pool after the stem, so every stage sees twice the height and width (4x the
    compute): the 80x60 photos reach the last stage as 5x4 instead of 3x2. The weights are the same tensors."""

    def build(weights: object) -> tuple[nn.Module, int]:
        net = factory(weights=weights)
        width = cast(nn.Linear, net.fc).in_features
        net.fc = nn.Identity()
        if keep_resolution:
            net.maxpool = nn.Identity()
        return net, width

    build.weights_enum = weights_enum  # type: ignore[attr-defined]
    return build


def _classifier_last(factory: Callable[..., nn.Module], weights_enum: object) -> Callable[[object], tuple[nn.Module, int]]:
    def build(weights: object) -> tuple[nn.Module, int]:
        net = factory(weights=weights)
        head = cast(nn.Module, net.classifier)
        width = next(m for m in head.modules() if isinstance(m, nn.Linear)).in_features
        net.classifier = nn.Identity()
        return net, width

    build.weights_enum = weights_enum  # type: ignore[attr-defined]
    return build


BACKBONES: dict[str, Callable[[object], tuple[nn.Module, int]]] = {
    "resnet18": _resnet(models.resnet18, models.ResNet18_Weights.DEFAULT),
    "resnet18_fine": _resnet(models.resnet18, models.ResNet18_Weights.DEFAULT, keep_resolution=True),
    "resnet50": _resnet(models.resnet50, models.ResNet50_Weights.DEFAULT),
    "efficientnet_b0": _classifier_last(models.efficientnet_b0, models.EfficientNet_B0_Weights.DEFAULT),
    "mobilenet_v3_large": _classifier_last(models.mobilenet_v3_large, models.MobileNet_V3_Large_Weights.DEFAULT),
}


class PretrainedWeightsUnavailable(RuntimeError):
    """Pretrained weights were asked for but cannot be had (offline, no local file)."""


class Encoder(nn.Module):
    """uint8 NCHW image batch -> L2-normalised embedding. Normalisation lives inside, so callers pass raw pixels."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: nn.Module, width: int, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(width, embedding_dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        return F.normalize(self.head(self.backbone(x)), dim=1)


class CosineClassifier(nn.Module):
    """Class logits as scaled cosine similarity to learned class proxies: trains the embedding for retrieval.

    With ``margin`` > 0 (CosFace), training subtracts the margin from the true class's cosine, so an item must be
    closer to its own class proxy than to any other by at least that much: tighter, better separated classes."""

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 16.0, margin: float = 0.0) -> None:
        super().__init__()
        self.proxies = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)
        self.scale = scale
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cosines = embeddings @ F.normalize(self.proxies, dim=1).T
        if labels is not None and self.margin:
            known = labels >= 0  # -1: the attribute is missing for this item
            penalty = F.one_hot(labels.clamp(min=0), cosines.shape[1]) * known[:, None]
            cosines = cosines - self.margin * penalty.to(cosines.dtype)
        return self.scale * cosines


def build_encoder(backbone: str = "resnet18", weights: str = "none", embedding_dim: int = EMBEDDING_DIM) -> Encoder:
    """Build an encoder. ``weights``: "none" (random init), "imagenet" (torchvision's download, needs network or
    a filled torch hub cache), or a path to a local backbone state_dict file (loaded with weights_only=True)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    build = BACKBONES[backbone]
    if weights == "none":
        net, width = build(None)
    elif weights == "imagenet":
        try:
            net, width = build(build.weights_enum)  # type: ignore[attr-defined]
        except (OSError, RuntimeError) as exc:
            raise PretrainedWeightsUnavailable(
                f"could not load ImageNet weights for {backbone} ({exc}); offline, pass a local weights file instead"
            ) from exc
    else:
        path = Path(weights)
        if not path.is_file():
            raise PretrainedWeightsUnavailable(f"weights file {path} not found")
        net, width = build(None)
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, _unexpected = net.load_state_dict(state, strict=False)
        if len(missing) > len(state):
            raise PretrainedWeightsUnavailable(f"{path} does not look like {backbone} weights (missing {len(missing)} keys)")
    return Encoder(net, width, embedding_dim)
