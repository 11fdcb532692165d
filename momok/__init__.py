"""momok: a reproducible pipeline for MoMoK (multi-modal knowledge graph completion)."""

__version__ = "0.1.0"
