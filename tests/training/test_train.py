import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionrec.config import EMBEDDING_DIM
from fashionrec.data.table import decode_images, is_holdout, read_table
from fashionrec.local.stages import StageOutputs
from fashionrec.params import Augmentation, TrainConfig
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.training.card import ModelCard
from fashionrec.training.model import BACKBONES, CosineClassifier, PretrainedWeightsUnavailable, build_encoder
from fashionrec.training.train import augment, load_encoder


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_backbone_gives_unit_embeddings(backbone: str) -> None:
    encoder = build_encoder(backbone).eval()
    with torch.no_grad():
        out = encoder(torch.randint(0, 256, (2, 3, 80, 60), dtype=torch.uint8))
    assert out.shape == (2, EMBEDDING_DIM)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_the_fine_stem_keeps_twice_the_resolution_with_the_same_weights() -> None:
    """resnet18_fine is resnet18 without the max-pool: the last stage sees 5x4 of an 80x60 photo instead of 3x2,
    and a resnet18 state_dict loads into it unchanged (ImageNet weights or a warm start carry over)."""
    plain, fine = build_encoder("resnet18").backbone, build_encoder("resnet18_fine").backbone
    fine.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 80, 60)

    def last_stage(net: torch.nn.Module) -> tuple[int, ...]:
        seen: list[tuple[int, ...]] = []
        layer4 = net.get_submodule("layer4")
        hook = layer4.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[2:])))
        with torch.no_grad():
            net.eval()(x)
        hook.remove()
        return seen[0]

    assert last_stage(plain) == (3, 2) and last_stage(fine) == (5, 4)


def test_weights_options_fail_clearly_and_local_file_loads(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_encoder("vgg99")
    with pytest.raises(PretrainedWeightsUnavailable, match="not found"):
        build_encoder("resnet18", str(tmp_path / "missing.pt"))
    donor = build_encoder("resnet18")
    path = tmp_path / "resnet18.pt"
    torch.save(donor.backbone.state_dict(), path)
    loaded = build_encoder("resnet18", str(path))
    assert torch.equal(loaded.backbone.state_dict()["conv1.weight"], donor.backbone.state_dict()["conv1.weight"])


def test_cosface_margin_lowers_only_the_true_class_logit_and_only_in_training() -> None:
    head = CosineClassifier(4, 3, scale=10.0, margin=0.25)
    embeddings = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    labels = torch.tensor([0, 1, 2, -1, 1])  # -1: an item whose auxiliary attribute is missing
    plain, margined = head(embeddings), head(embeddings, labels)
    difference = plain - margined
    expected = torch.zeros(5, 3)
    expected[[0, 1, 2, 4], [0, 1, 2, 1]] = 2.5  # scale x margin, on the true class only
    assert torch.allclose(difference, expected, atol=1e-6)


@pytest.mark.parametrize("strength", list(Augmentation))
def test_augmentation_keeps_shape_and_pixel_range_and_is_seeded(strength: Augmentation) -> None:
    images = torch.randint(0, 256, (6, 3, 80, 60), dtype=torch.uint8)
    first = augment(images, torch.Generator().manual_seed(1), strength)
    again = augment(images, torch.Generator().manual_seed(1), strength)
    other = augment(images, torch.Generator().manual_seed(2), strength)
    assert first.shape == (6, 3, 80, 60) and first.dtype == torch.float32
    assert float(first.min()) >= 0 and float(first.max()) <= 255
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.allclose(first, images.float())


def test_holdout_split_is_a_stable_function_of_the_id() -> None:
    ids = np.arange(10_000, 20_000)
    held = is_holdout(ids, 0.2)
    assert 0.18 < held.mean() < 0.22
    shuffled = np.random.default_rng(0).permutation(ids)
    assert set(shuffled[is_holdout(shuffled, 0.2)]) == set(ids[held])  # order does not matter
    assert set(ids[is_holdout(ids, 0.1)]) <= set(ids[held])  # a larger fraction only adds items
    assert not is_holdout(ids, 0.0).any()


def test_trained_model_is_written_and_reloads_identically(stages: StageOutputs) -> None:
    card = ModelCard.load(stages.model_dir)
    assert len(card.model_version) == 12 and len(card.dataset_digest) == 64
    assert card.image_size == (80, 60) and len(card.classes) == 6
    encoder, again = load_encoder(stages.model_dir)
    assert again == card
    # The reloaded encoder gives the vectors the embed stage wrote with the trained one.
    table, written = read_embeddings(stages.embeddings)
    valid = read_table(stages.valid).set_index("id").loc[table["item_id"].to_numpy()[:4]]
    batch = torch.from_numpy(decode_images(valid["image"], card.image_size))
    with torch.no_grad():
        assert np.allclose(encoder(batch).numpy(), written[:4], atol=1e-5)
    untrained = build_encoder(card.backbone, "none", card.embedding_dim).eval()
    with torch.no_grad():
        assert not np.allclose(untrained(batch).numpy(), written[:4], atol=1e-2)  # the comparison can fail


@pytest.mark.parametrize("ema_decay", [0.0, 0.6])
def test_interrupted_training_resumes_to_the_same_model(
    stages: StageOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ema_decay: float
) -> None:
    """A KFP retry after a pre-emption continues from the last epoch's checkpoint and ends with the same model, the
    same kept epoch and the same per-epoch history (the moving average, when on, resumes too)."""
    import fashionrec.training.train as training

    config = training.TrainConfig(epochs=3, batch_size=16, seed=2, ema_decay=ema_decay)
    reference = training.train(stages.valid, tmp_path / "reference", config)
    assert not (tmp_path / "reference" / training.CHECKPOINT_FILE).exists()  # removed once the model is written

    original, calls = training.augment, {"n": 0}

    def preempted_in_epoch_three(images: torch.Tensor, generator: torch.Generator, strength: Augmentation) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 8:  # the time budget's measurement augments once, then 3 steps per epoch: epoch 3's first
            raise RuntimeError("node pre-empted")
        return original(images, generator, strength)

    monkeypatch.setattr(training, "augment", preempted_in_epoch_three)
    with pytest.raises(RuntimeError, match="pre-empted"):
        training.train(stages.valid, tmp_path / "retried", config)
    state = torch.load(tmp_path / "retried" / training.CHECKPOINT_FILE, weights_only=True)
    assert state["epoch"] == 2
    monkeypatch.setattr(training, "augment", original)
    resumed = training.train(stages.valid, tmp_path / "retried", config)
    first = torch.load(tmp_path / "reference" / "encoder.pt", weights_only=True)
    second = torch.load(tmp_path / "retried" / "encoder.pt", weights_only=True)
    assert all(torch.allclose(first[k].float(), second[k].float(), atol=1e-5) for k in first)
    assert resumed.metrics["holdout_accuracy"] == pytest.approx(reference.metrics["holdout_accuracy"])
    assert resumed.metrics["kept_epoch"] == reference.metrics["kept_epoch"]
    histories = [json.loads((tmp_path / run / training.TRAINING_HISTORY_FILE).read_text()) for run in ("reference", "retried")]
    assert [r["epoch"] for r in histories[1]] == [1, 2, 3]
    for before, after in zip(*histories, strict=True):
        assert (after["loss"], after["holdout_accuracy"]) == pytest.approx((before["loss"], before["holdout_accuracy"]), abs=1e-5)


def test_a_checkpoint_from_other_settings_is_not_resumed(stages: StageOutputs, tmp_path: Path) -> None:
    import fashionrec.training.train as training

    torch.save({"key": {"epochs": 99}, "epoch": 1}, tmp_path / training.CHECKPOINT_FILE)
    card = training.train(stages.valid, tmp_path, training.TrainConfig(epochs=1, batch_size=16))
    assert len(card.model_version) == 12


def test_a_preemption_while_writing_a_checkpoint_keeps_the_previous_one(
    stages: StageOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fashionrec.training.train as training

    config = training.TrainConfig(epochs=2, batch_size=16, seed=4)
    reference = training.train(stages.valid, tmp_path / "reference", config)
    real_save, saves = torch.save, {"n": 0}

    def preempted_during_the_second_save(obj: object, f: Path) -> None:
        saves["n"] += 1
        if saves["n"] == 2:
            Path(f).write_bytes(b"PK\x03\x04 half a zip")  # what a kill mid-write leaves
            raise RuntimeError("node pre-empted")
        real_save(obj, f)

    monkeypatch.setattr(training.torch, "save", preempted_during_the_second_save)
    with pytest.raises(RuntimeError, match="pre-empted"):
        training.train(stages.valid, tmp_path / "retried", config)
    monkeypatch.setattr(training.torch, "save", real_save)
    state = torch.load(tmp_path / "retried" / training.CHECKPOINT_FILE, weights_only=True)
    assert state["epoch"] == 1  # the first epoch's checkpoint, intact
    assert training.train(stages.valid, tmp_path / "retried", config).model_version == reference.model_version


def test_a_corrupt_checkpoint_is_reported_and_training_starts_over(
    stages: StageOutputs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fashionrec.training.train as training

    config = training.TrainConfig(epochs=1, batch_size=16, seed=6)
    reference = training.train(stages.valid, tmp_path / "reference", config)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / training.CHECKPOINT_FILE).write_bytes(b"\x00garbage, not a checkpoint")
    assert training.train(stages.valid, tmp_path / "corrupt", config).model_version == reference.model_version
    assert "cannot be read" in capsys.readouterr().err


def test_precision_choice() -> None:
    from fashionrec.training.train import autocast_dtype, cpu_has_native_bf16

    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if cpu_has_native_bf16() else None)
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype(cpu, "fp8")


GOLDEN = Path(__file__).with_name("data") / "train_golden.json"


def cpu_kind() -> str:
    """torch's CPU capability, with "+AMX" where the CPU has AMX tiles: the math libraries pick other kernels on such
    CPUs even in fp32, so a tiny run's weights round differently there (measured: ~1% on the probe embedding)."""
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").is_file() else ""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{capability}+AMX" if " amx_tile" in flags else capability


@pytest.mark.trained
def test_the_split_training_loop_gives_the_weights_of_the_monolithic_one(tmp_path: Path) -> None:
    """Fingerprints of a tiny run recorded with train() before it was split into steps: same seed, same weights."""
    from fashionrec.data.synth import synth_catalog
    from fashionrec.data.validation.quarantine import validate_catalog
    from fashionrec.data.validation.report import output_paths, write_outputs
    from fashionrec.params import TrainConfig
    from fashionrec.training.train import train

    golden = json.loads(GOLDEN.read_text())
    capability = cpu_kind()
    recorded = golden["by_cpu_capability"].get(capability)
    assert recorded is not None, (
        f"no fingerprint recorded for CPU capability {capability} ({sorted(golden['by_cpu_capability'])} are): record "
        f"one with commit 9cbb6af's train() on such a CPU, as {GOLDEN.name} says"
    )
    catalog = tmp_path / "catalog"
    synth_catalog(catalog, **golden["catalog"])
    paths = output_paths(tmp_path / "validation")
    write_outputs(validate_catalog(catalog), catalog, paths)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as recorded: float sums, and so the weights, depend on how many threads share them
    try:
        card = train(paths.valid, tmp_path / "model", TrainConfig(**golden["config"]))
    finally:
        torch.set_num_threads(threads)
    encoder, _ = load_encoder(tmp_path / "model")
    probe = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 80, 60), dtype=np.uint8))
    with torch.no_grad():
        embedding = encoder(probe).numpy()[:, :8]
    weight_sum = float(sum(v.double().sum() for v in encoder.state_dict().values() if v.is_floating_point()))
    assert np.allclose(embedding, recorded["probe_embedding_head"], atol=1e-4)
    assert weight_sum == pytest.approx(recorded["weight_sum"], rel=1e-5)  # tolerances: another CPU model may round differently
    assert card.metrics["train_loss"] == pytest.approx(recorded["train_loss"], rel=1e-4)
    assert card.metrics["holdout_accuracy"] == recorded["holdout_accuracy"]


@pytest.mark.trained
def test_co_clicked_pairs_train_only_within_the_training_split(tiny_catalog: Path, tmp_path: Path) -> None:
    """Pairs touching a held-out product are dropped (they would teach the evaluation's answers); the rest add a
    contrastive term, and the model card says how many pairs trained."""
    from fashionrec.data.validation.quarantine import validate_catalog
    from fashionrec.data.validation.report import output_paths, write_outputs
    from fashionrec.training.train import load_training_data, train, training_pairs

    assert training_pairs(np.asarray([10, 20, 30]), [(10, 30), (20, 99), (30, 30), (20, 10)]).tolist() == [[0, 2], [1, 0]]
    paths = output_paths(tmp_path / "validation")
    write_outputs(validate_catalog(tiny_catalog), tiny_catalog, paths)
    config = TrainConfig(epochs=1, batch_size=16, coclick_weight=0.5, holdout_fraction=0.2)
    data = load_training_data(paths.valid, config)
    ids = data.table["id"].astype(int).to_numpy()
    trained_ids, held_id = ids[data.train_idx], int(ids[data.holdout_idx[0]])
    pairs = [(int(a), int(b)) for a, b in zip(trained_ids[:20:2], trained_ids[1:20:2], strict=True)] + [
        (held_id, int(trained_ids[0]))
    ]
    card = train(paths.valid, tmp_path / "model", config, pairs)
    assert card.metrics["train_coclick_pairs"] == 10 and np.isfinite(card.metrics["train_loss"])
