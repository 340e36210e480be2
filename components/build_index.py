from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def build_index(
    embeddings: Input[Dataset],
    valid_catalog: Input[Dataset],
    index: Output[Artifact],
    calibration: Output[Metrics],
    index_kind: str = "auto",
    index_recall_target: float = 0.99,
    holdout_fraction: float = 0.2,
) -> None:
    """Build the FAISS index of all item embeddings (items.faiss + index.json with its model_version), and beside it
    the model's reference profile for monitoring (reference/: a sample of embeddings, the monitored statistics of
    catalogue photos, class shares, held-out items' top-1 scores), which travels with every served snapshot.

    ``index_kind``: auto measures HNSW, IVF and exact search on the catalogue's own embeddings (held-out items as
    queries, exact search as truth) and takes the fastest whose recall@10 reaches ``index_recall_target`` (exact
    below 10k items); hnsw or ivf force a kind and get the smallest search knob that reaches it; flat is exact. The
    measured recall, latencies and parameters are in index.json and the ``calibration`` metrics.
    """
    from dataclasses import asdict
    from pathlib import Path

    from fashionrec.drift.profile import write_profile
    from fashionrec.retrieval.index import build_index as run_build

    meta = run_build(Path(embeddings.path), Path(index.path), index_kind, index_recall_target)
    if meta.calibration:
        for candidate in meta.calibration["candidates"]:
            for measure in ("recall", "p50_ms", "p99_ms", "build_seconds"):
                calibration.log_metric(f"{candidate['kind']}_{measure}", float(candidate[measure]))
        calibration.log_metric("chosen_recall_at_10", float(meta.calibration["chosen"]["recall"]))
        calibration.log_metric("chosen_p50_ms", float(meta.calibration["chosen"]["p50_ms"]))
    profile = write_profile(Path(embeddings.path), Path(valid_catalog.path), Path(index.path), holdout_fraction)
    index.metadata.update({**asdict(meta), "low_score_threshold": profile.low_score_threshold})
    calibration.metadata.update({"index_kind": meta.index_kind, **{f"param_{k}": v for k, v in meta.index_params.items()}})
