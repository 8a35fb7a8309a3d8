"""Fixtures: tiny, structurally real SD models, cached per session (see tests/modelgen.py)."""
