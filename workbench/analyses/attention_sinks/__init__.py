"""Attention sinks (Xiao et al. 2023; Gu et al. 2024; Yu et al. 2024): score, report, checks, views, CLI."""
