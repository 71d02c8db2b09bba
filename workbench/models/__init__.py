"""Models: the registry, loading (bridge + streaming twin), the converted-weights cache, tiny test models."""
