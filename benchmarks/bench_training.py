"""Training throughput of the train stage against a bare torch loop on the same model, batch and device.

    python benchmarks/bench_training.py [--items-per-type 40] [--epochs 2] [--batch-size 64]

The bare loop feeds a pre-made uint8 batch straight into forward/backward/step (no data path, no augmentation), so
ours / bare shows what the data path costs. Runs on the GPU when there is one (then also records its name and the
precision). Writes benchmarks/results/training.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from fashionrec.data.table import read_table
from fashionrec.params import TrainConfig
from fashionrec.training.model import CosineClassifier, build_encoder
from fashionrec.training.train import autocast_dtype, pick_device, train

RESULTS = Path(__file__).resolve().parent / "results"


def bare_loop(config: TrainConfig, classes: int, steps: int) -> float:
    """Images/s of forward + backward + optimizer step on one resident batch."""
    device = pick_device(config.device)
    dtype = autocast_dtype(device, config.precision)
    encoder = build_encoder(config.backbone).to(device).to(memory_format=torch.channels_last)
    head = CosineClassifier(config.embedding_dim, classes).to(device)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=config.learning_rate)
    forward = torch.compile(encoder) if config.compile else encoder
    x = torch.randint(0, 256, (config.batch_size, 3, *config.image_size), dtype=torch.uint8, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, classes, (config.batch_size,), device=device)
    for step in range(steps + 3):  # 3 warm-up steps
        if step == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(head(forward(x)).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * config.batch_size / (time.perf_counter() - started)


def synth_and_validate(root: Path, items_per_type: int) -> Path:
    from fashionrec.data.synth import synth_catalog
    from fashionrec.data.validation.quarantine import validate_catalog
    from fashionrec.data.validation.report import output_paths, write_outputs

    synth_catalog(root / "catalog", items_per_type=items_per_type)
    paths = output_paths(root / "validation")
    write_outputs(validate_catalog(root / "catalog"), root / "catalog", paths)
    return paths.valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items-per-type", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder in both loops")
    parser.add_argument(
        "--valid-table",
        type=Path,
        help="an existing valid.parquet from the validate stage (skips synth + validation, e.g. on a GPU machine without GX)",
    )
    parser.add_argument("--results", default="training.json", help="file name under benchmarks/results/")
    args = parser.parse_args()
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, precision=args.precision, compile=args.compile, resume=False
    )
    device = pick_device(config.device)
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        root = Path(tmp)
        valid = args.valid_table or synth_and_validate(root, args.items_per_type)
        card = train(valid, root / "model", config)
        train_items = len(read_table(valid))
    ours = card.metrics["train_images_per_second"]
    steps = max(5, int(card.metrics["train_seconds"] * ours / args.batch_size / 2))
    bare = bare_loop(config, len(card.classes), steps)
    dtype = autocast_dtype(device, config.precision)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else None
    report = Table(
        title=f"training throughput, resnet18 at {config.image_size[0]}x{config.image_size[1]}, batch {args.batch_size}, {device}"
    )
    for column in ("loop", "images/s", "ours / bare"):
        report.add_column(column)
    report.add_row("fashionrec train (data path + augmentation)", f"{ours:,.0f}", f"{ours / bare:.2f}")
    report.add_row("bare torch loop (resident batch)", f"{bare:,.0f}", "1.00")
    Console().print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.results).write_text(
        json.dumps(
            {
                "machine": {
                    "platform": platform.platform(),
                    "device": str(device),
                    "gpu": gpu,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                },
                "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
                "batch_size": args.batch_size,
                "train_items": train_items,
                "compile": args.compile,
                "ours_images_per_second": ours,
                "bare_images_per_second": bare,
                "ratio": ours / bare,
                "holdout_accuracy": card.metrics.get("holdout_accuracy"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
