"""Tiny random checkpoints of vision-language families (one module each)."""
