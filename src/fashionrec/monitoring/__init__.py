"""Model monitoring: the reference profile, live drift and recommendation health, the drift report and the retraining trigger."""
