"""Running it all on one machine: server processes on loopback, hot swap, kfp.local pipeline runs, in-process stages, the demo."""
