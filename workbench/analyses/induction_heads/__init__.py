"""Induction heads (Olsson et al. 2022): score, prompts, checks and CLI."""
