"""Rolling a gated model out: publish its release, canary it beside production, then promote or roll back (KServe or local servers)."""
