"""Head divergence (He et al. 2024): score, prompts, checks and CLI."""
