"""Scripted batch runs: a TOML plan of analyses × models × parameters, run locally or on Ray, resumable."""
