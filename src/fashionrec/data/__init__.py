"""Catalogue data: the Kaggle layout, synthetic catalogues with injected defects, per-image facts, validation and provenance."""
