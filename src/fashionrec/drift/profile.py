"""The reference profile: what a model was trained and indexed on, written beside its index (``index/reference/``)
so that it travels with every served snapshot and release, and read by the transformer's live monitor and by
`fashionrec monitor`.

It holds a sample of catalogue embeddings, the monitored image statistics of a sample of catalogue photos
(fashionrec.data.imagefacts.IMAGE_STATS), the class shares, and the top-1 scores of held-out items queried against
the index (the "recognised product" scores: a live query below their 5th percentile looks like nothing the model
knows). JSON and one .npy, nothing that executes on load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.config import FEAST_JOIN_KEY, LABEL_COLUMN
from fashionrec.data.imagefacts import image_stats
from fashionrec.data.split import holdout_mask, product_groups
from fashionrec.data.table import read_table
from fashionrec.imaging import decode_image
from fashionrec.retrieval.embeddings import read_embeddings
from fashionrec.retrieval.index import ItemIndex

PROFILE_DIR = "reference"  # inside the index folder
PROFILE_FILE = "profile.json"
EMBEDDINGS_FILE = "embeddings.npy"
SAMPLE_SIZE = 500  # reference rows kept per signal: enough for the tests' power, small beside the index
LOW_SCORE_QUANTILE = 0.05  # a query whose top-1 score is below this quantile of held-out items' is "unrecognised"


@dataclass(frozen=True)
class ReferenceProfile:
    model_version: str
    embeddings: np.ndarray  # [n, d] sample of catalogue embeddings
    image_stats: dict[str, np.ndarray]  # statistic -> sample of catalogue photos' values
    class_shares: dict[str, float]
    top1_scores: np.ndarray  # held-out items' top-1 score against the index (themselves excluded)
    catalogue_size: int

    @property
    def low_score_threshold(self) -> float:
        return float(np.quantile(self.top1_scores, LOW_SCORE_QUANTILE)) if len(self.top1_scores) else 0.0

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / EMBEDDINGS_FILE, np.ascontiguousarray(self.embeddings, dtype=np.float32), allow_pickle=False)
        body = {
            "model_version": self.model_version,
            "image_stats": {name: values.tolist() for name, values in self.image_stats.items()},
            "class_shares": self.class_shares,
            "top1_scores": self.top1_scores.tolist(),
            "catalogue_size": self.catalogue_size,
            "low_score_threshold": self.low_score_threshold,  # for people reading the file
        }
        (directory / PROFILE_FILE).write_text(json.dumps(body), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: Path) -> ReferenceProfile:
        body = json.loads((directory / PROFILE_FILE).read_text(encoding="utf-8"))
        return cls(
            model_version=str(body["model_version"]),
            embeddings=np.load(directory / EMBEDDINGS_FILE, allow_pickle=False),
            image_stats={name: np.asarray(values, dtype=np.float64) for name, values in body["image_stats"].items()},
            class_shares={str(k): float(v) for k, v in body["class_shares"].items()},
            top1_scores=np.asarray(body["top1_scores"], dtype=np.float64),
            catalogue_size=int(body["catalogue_size"]),
        )

    @classmethod
    def of_index(cls, index_dir: Path) -> ReferenceProfile | None:
        """The profile written beside an index, if there is one (indexes built before profiles have none)."""
        directory = index_dir / PROFILE_DIR
        return cls.load(directory) if (directory / PROFILE_FILE).is_file() else None


GROUP_SEARCH_DEPTH = 32  # hits searched per held-out item to find the best one outside its own product group


def build_profile(
    embeddings: Path, valid_table: Path, index_dir: Path, holdout_fraction: float, seed: int = 0
) -> ReferenceProfile:
    """The profile of the model whose embeddings and index these are, over the validated catalogue it was trained on."""

    table, vectors = read_embeddings(embeddings)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(table), size=min(SAMPLE_SIZE, len(table)), replace=False))
    valid = read_table(valid_table)
    photos = valid.iloc[np.sort(rng.choice(len(valid), size=min(SAMPLE_SIZE, len(valid)), replace=False))]
    stats = pd.DataFrame([image_stats(decode_image(bytes(data))) for data in photos["image"]])
    index = ItemIndex.load(index_dir)
    # The best hit outside the query's own product group: a shopper's photo of a product the catalogue lacks has
    # no near-duplicate or colour variant there either.
    group_of = dict(zip(valid["id"].astype("int64"), product_groups(valid), strict=True))
    groups = np.array([group_of.get(int(i), int(i)) for i in table[FEAST_JOIN_KEY]])
    held_out_ids = set(valid["id"].astype("int64")[holdout_mask(valid, holdout_fraction)])
    held_out = np.flatnonzero(table[FEAST_JOIN_KEY].isin(held_out_ids).to_numpy())
    queries = (held_out if len(held_out) else np.arange(len(table)))[:SAMPLE_SIZE]
    scores, hits = index.search(vectors[queries], min(GROUP_SEARCH_DEPTH, index.count))
    group_of_hit = np.vectorize(lambda i: group_of.get(int(i), int(i)), otypes=[np.int64])(hits)
    outside = (group_of_hit != groups[queries][:, None]) & (hits >= 0)
    first = outside.argmax(1)
    top1 = np.where(outside.any(1), scores[np.arange(len(queries)), first], scores[:, -1])
    shares = valid[LABEL_COLUMN].value_counts(normalize=True)
    return ReferenceProfile(
        model_version=str(table["model_version"].iloc[0]),
        embeddings=vectors[sample],
        image_stats={name: stats[name].to_numpy(dtype=np.float64) for name in stats.columns},
        class_shares={str(k): float(v) for k, v in shares.items()},
        top1_scores=top1.astype(np.float64),
        catalogue_size=len(table),
    )


def write_profile(embeddings: Path, valid_table: Path, index_dir: Path, holdout_fraction: float) -> ReferenceProfile:
    """Build the profile and write it beside the index (``index_dir/reference/``)."""
    profile = build_profile(embeddings, valid_table, index_dir, holdout_fraction)
    profile.save(index_dir / PROFILE_DIR)
    return profile
