"""Retrieval heads (Wu et al. 2024): score, prompts, checks, views and CLI."""
