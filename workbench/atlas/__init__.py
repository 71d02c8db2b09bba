"""The head atlas (issue 16): every head of a model across the analyses, with intervals and causal checks."""
