"""Attention-head interpretability workbench."""

__version__ = "0.1.0"
