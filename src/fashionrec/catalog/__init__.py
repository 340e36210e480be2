"""Catalogue changes without retraining: products added or removed live, in the online store and every index, and replayed onto new versions."""
