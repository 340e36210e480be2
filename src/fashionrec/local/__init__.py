"""Running it all on one machine: the work dir's production release, kfp.local pipeline runs, in-process stages, Redis, the monitoring loop, the demo."""
