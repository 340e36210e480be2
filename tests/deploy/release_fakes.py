"""Serving artifacts that publish, read and fetch like a pipeline run's, without training a model."""

import json
import zipfile
from pathlib import Path

from fashionrec.config import MODEL_NAME
from fashionrec.serving.release import Deployment


def fake_deployment(root: Path, version: str) -> Deployment:
    """A model's serving artifacts as the package, index and features steps leave them (the .mar only names its
    version: nothing here runs it)."""
    store = root / version / "model_store"
    (store / "model-store").mkdir(parents=True)
    with zipfile.ZipFile(store / "model-store" / f"{MODEL_NAME}.mar", "w") as mar:
        mar.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelVersion": version}}))
    for part in ("index", "feature_repo"):
        (root / version / part).mkdir()
        (root / version / part / "placeholder").write_text(version)
    return Deployment(store, root / version / "index", root / version / "feature_repo")
