"""Engagement: shoppers' feedback events, per-version engagement, the sequential test that judges it, simulated shoppers."""
