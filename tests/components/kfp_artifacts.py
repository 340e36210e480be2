"""KFP artifacts for calling a component through ``component.python_func`` (as the launcher would)."""

from pathlib import Path
from typing import TypeVar

from kfp.dsl import Artifact

A = TypeVar("A", bound=Artifact)


def artifact(kind: type[A], folder: Path, name: str) -> A:
    """A KFP artifact whose local path is folder/name, as the launcher hands it to a component."""
    return kind(name=name, uri=str(folder / name), metadata={})
