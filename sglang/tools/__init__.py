"""Maintenance tools run as modules: `python -m sglang.tools.gen_docs` regenerates the reference pages."""
