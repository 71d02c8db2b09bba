"""The worked example of docs/adding_an_analysis.md (docs/examples/first_token_attention), importable by tests,
and a fixture that registers it next to the shipped analyses for one test (a test-local registry)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))

from first_token_attention import SPEC as EXAMPLE  # noqa: E402

SMALL = {"n_prompts": 2, "n_tokens": 24}  # the example's run and check on the tiny model, in a second


@pytest.fixture
def example_registered(monkeypatch):
    """get_analysis (CLI, batch plans, the runner) finds the example while the test runs."""
    import workbench.analyses as analyses

    monkeypatch.setattr(analyses, "REGISTRY", (*analyses.REGISTRY, EXAMPLE))
    return EXAMPLE
