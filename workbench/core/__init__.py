"""Core types every layer shares: heads, prompts, score tables, paths, errors, validation."""
