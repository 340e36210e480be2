"""What makes catalogue rows one product family: the same name apart from its colour words (colour variants)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd


def colour_words(colours: Iterable[object]) -> set[str]:
    """The lower-case words of a catalogue's colour names ("Navy Blue" gives navy and blue)."""
    return {w for c in colours if isinstance(c, str) for w in re.findall(r"[a-z0-9]+", c.lower())}


def family_key(name: object, colours: set[str]) -> str:
    """The name without its colour words, lower case ("" for no name): "Nike Men Blue Jersey" -> "nike men jersey"."""
    if not isinstance(name, str):
        return ""
    return " ".join(w for w in re.findall(r"[a-z0-9]+", name.lower()) if w not in colours)


def product_family(names: pd.Series, colours: pd.Series) -> pd.Series:
    """``family_key`` of every name, the colour words taken from the whole catalogue's colours."""
    words = colour_words(colours.dropna().astype(str))
    return names.map(lambda name: family_key(name, words))
