"""Validation of a catalogue: the checks (a Great Expectations suite), the quarantine of failing rows, and the reports."""
