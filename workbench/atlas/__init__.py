"""The head atlas (issue 16). This branch adds causal.py and fill.py; the package itself is atlas_core's."""
