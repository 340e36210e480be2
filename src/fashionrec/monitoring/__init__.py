"""The monitoring step: the request log analysed against the reference profile, the HTML drift report and the retraining decision."""
