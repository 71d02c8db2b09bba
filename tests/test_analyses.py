"""Conformance over the analysis registry (tiny model) and real-model integration runs."""

from __future__ import annotations

import pytest

from workbench import api, results
from workbench.analyses import REGISTRY, get_analysis
from workbench.errors import WorkbenchError
from workbench.models import model_info

FAST = {"attention_profile": {"n_prompts": 2, "n_tokens": 24}}


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_every_analysis_returns_valid_head_scores(tiny, spec):
    scores, record = api.run_analysis(spec.name, tiny, params=FAST.get(spec.name), progress=False)
    info = model_info(tiny)
    assert len(scores) == info.n_layers * info.n_heads
    results.validate_head_scores(scores, n_layers=info.n_layers, n_heads=info.n_heads)
    loaded, again = api.load_result(record.run_id)
    assert again.model_fingerprint == info.fingerprint and len(loaded) == len(scores)
    assert not api.find_results(analysis=spec.name).empty


def test_unknown_analysis_and_parameters_fail_clearly():
    with pytest.raises(WorkbenchError, match="attention_profile"):
        get_analysis("retrieval_heds")
    spec = get_analysis("attention_profile")
    with pytest.raises(WorkbenchError, match="n_tokens"):
        spec.make_params({"n_tokenz": 3})
    with pytest.raises(WorkbenchError, match="not a valid int"):
        spec.make_params({"n_tokens": "many"})


def test_tiny_random_model_has_no_attention_sink(tiny):
    scores, _ = api.run_analysis("attention_profile", tiny, params={"n_prompts": 2, "n_tokens": 64},
                                 progress=False, save=False)
    assert scores["bos_mass"].max() < 0.3


@pytest.mark.real_model
def test_smollm2_profile_finds_sinks_and_previous_token_heads(smol):
    scores, record = api.run_analysis("attention_profile", smol, params={"n_prompts": 2, "n_tokens": 128},
                                      progress=False)
    assert len(scores) == 270
    # A trained Llama parks most attention on BOS in many heads, and has previous-token heads.
    assert (scores["bos_mass"] > 0.5).mean() > 0.2
    assert scores["prev_token"].max() > 0.5
    again, _ = api.run_analysis("attention_profile", smol, params={"n_prompts": 2, "n_tokens": 128},
                                progress=False)
    assert again["score"].tolist() == scores["score"].tolist()
    assert record.timings["total"] > 0
