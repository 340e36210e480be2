"""Drift detection that serving runs itself: the statistical tests (MMD, KS, PSI), the reference profile written beside the index, the transformer's live window."""
