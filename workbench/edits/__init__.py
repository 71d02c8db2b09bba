"""Edits to attention heads and the residual stream, applied while a model runs."""
