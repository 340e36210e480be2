from pathlib import Path

from kfp.dsl import Artifact, Dataset, Markdown
from kfp_artifacts import artifact

from components.gate_model import gate_model
from fashionrec.local.stages import StageOutputs


def test_gate_model_promotes_a_first_model_and_rejects_one_that_is_no_better(
    stages: StageOutputs, evaluation_dir: Path, tmp_path: Path
) -> None:
    valid = artifact(Dataset, stages.valid.parent, stages.valid.name)
    candidate = artifact(Artifact, evaluation_dir.parent, evaluation_dir.name)
    decision = artifact(Markdown, tmp_path, "decision")
    first = gate_model.python_func(valid_catalog=valid, candidate_evaluation=candidate, decision=decision)
    assert first.promote is True and "PROMOTE" in Path(decision.path).read_text()  # no production model yet
    again = gate_model.python_func(
        valid_catalog=valid, candidate_evaluation=candidate, decision=decision, production_model_dir=str(stages.model_dir)
    )
    text = Path(decision.path).read_text()
    assert again.promote is False and "REJECT" in text  # the same model is no improvement
    # paired on the same queries, the same model gains exactly nothing
    assert "precision_at_5 gain on the same" in text and "+0.0000, 95% interval [+0.0000, +0.0000]" in text
    assert decision.metadata["promote"] is False
