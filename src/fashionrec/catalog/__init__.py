"""Catalogue changes without retraining: products added or removed live, in the online store and every index."""
