"""Serving without torch: imports of torch and torchvision fail as if they were not installed.

Feast imports torch whenever it is installed (feast.torch_wrapper): ~0.5 GB and seconds of start-up that the
transformer never uses, and its image has none. A finder that refuses the import keeps a local run the same process
as in that image. It leaves ``sys.modules`` without a torch entry: a ``None`` there (the usual way to block an
import) makes libraries that probe ``sys.modules["torch"]`` for tensor types, such as SciPy, fail instead.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

BLOCKED = ("torch", "torchvision")


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: serving runs without torch)", name=fullname)
        return None


def block_torch() -> None:
    """Refuse every later import of torch and torchvision in this process (idempotent)."""
    if not any(isinstance(finder, _Refuse) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Refuse())
