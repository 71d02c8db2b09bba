"""Models: the registry, loading (bridge + streaming twin), the converted-weights cache, tiny test models."""

DEFAULT_MODEL = "smollm2-135m"
