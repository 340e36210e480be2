"""Where the programs in the repository's kserve/ folder are: the checkout's kserve/ (editable installs, local runs)
or the copy packed into the wheel beside this package (images, where the Dockerfile also puts kserve/ at
config.IMAGE_KSERVE_DIR for the manifests)."""

from __future__ import annotations

from pathlib import Path

# The wheel's copy of kserve/ (pyproject.toml's force-include names the same folder).
PACKAGED_KSERVE_DIR = "kserve_entrypoints"
TRANSFORMER_ENTRYPOINT = "transformer.py"
KSERVE_ENCODER_ENTRYPOINT = "kserve_encoder.py"


def kserve_file(name: str) -> Path:
    """The file ``name`` of kserve/."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parents[1] / "kserve" / name, package / PACKAGED_KSERVE_DIR / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"kserve/{name} not found beside the fashionrec package")
