"""Catalogue data: the Kaggle layout, synthetic catalogues with injected defects, per-image facts, validation, provenance and the catalogue change log."""
