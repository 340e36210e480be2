from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from fashionrec.config import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def gate_model(
    valid_catalog: Input[Dataset],
    candidate_evaluation: Input[Artifact],
    decision: Output[Markdown],
    production_model_dir: str = "",
    registry_uri: str = "",
    holdout_fraction: float = 0.2,
    min_improvement: float = 0.0,
    min_precision_at_5: float = 0.5,
    gate_guards: dict = {},  # noqa: B006 (KFP parameters need literal defaults)
) -> NamedTuple("GateOutputs", [("promote", bool)]):  # type: ignore[valid-type]
    """Compare the candidate with the production model on the same held-out split and decide: promote only if
    precision@5 reaches the absolute floor ``min_precision_at_5`` (the first model too), improves by at least
    ``min_improvement`` and no guard metric (coverage@10, nDCG@10) regresses
    beyond its tolerance (``gate_guards`` overrides tolerances). Production is ``production_model_dir`` when given, else the registry's "production" alias
    at ``registry_uri``; none at all means the floor alone decides. The decision and its reasons are a Markdown artifact,
    with the paired group-bootstrap interval of the precision@5 gain on the same queries (reported, not deciding)."""
    import json
    from collections import namedtuple
    from pathlib import Path

    import pandas as pd

    from fashionrec.config import METRICS_FILE, PER_QUERY_FILE
    from fashionrec.training.card import ModelCard
    from fashionrec.training.evaluate import evaluate
    from fashionrec.training.gate import GatePolicy, decide, paired_gain

    candidate = json.loads((Path(candidate_evaluation.path) / METRICS_FILE).read_text())
    candidate_queries = Path(candidate_evaluation.path) / PER_QUERY_FILE
    production, gain = None, None
    if not production_model_dir and registry_uri:
        from fashionrec.training.registry import MlflowRegistry
        from fashionrec.training.registry import production_model_dir as resolve_production

        production_model_dir = str(resolve_production(MlflowRegistry(registry_uri)) or "")
    if production_model_dir:
        production_card = ModelCard.load(Path(production_model_dir))
        production_evaluation = evaluate(Path(valid_catalog.path), Path(production_model_dir), holdout_fraction)
        production = {"model_version": production_card.model_version, **production_evaluation.metrics}
        if candidate_queries.is_file():  # evaluations before per_query.json: no paired interval
            gain = paired_gain(pd.read_json(candidate_queries, orient="records"), production_evaluation.per_query)
    policy = GatePolicy(min_improvement=min_improvement)
    policy = GatePolicy(
        min_improvement=min_improvement,
        floor=min_precision_at_5,
        guards={**policy.guards, **{k: float(v) for k, v in gate_guards.items()}},
    )
    result = decide(candidate, production, policy, gain)
    Path(decision.path).write_text(result.markdown)
    decision.metadata.update({"promote": result.promote})
    return namedtuple("GateOutputs", ["promote"])(result.promote)  # type: ignore[arg-type]
