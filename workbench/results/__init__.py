"""Saved results: runs with provenance, the DuckDB catalog, circuit files."""
