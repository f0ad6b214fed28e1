"""Reasoning ("thinking") text in model output, split from the answer (`--reasoning-parser`)."""
