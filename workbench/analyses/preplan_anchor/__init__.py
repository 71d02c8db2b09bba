"""Preplan and anchor tokens (Li et al. 2025): score, prompts, checks, views and CLI."""
