"""Conformance over the analysis registry (tiny model) and real-model integration runs."""

from __future__ import annotations

import pytest

from workbench import api
from workbench.analyses import REGISTRY, get_analysis
from workbench.core.errors import WorkbenchError
from workbench.models.loading import model_info
from workbench.results import runs as results

FAST = {"attention_profile": {"n_prompts": 2, "n_tokens": 24},
        "retrieval_heads": {"lengths": "300", "n_depths": 1, "fmt": "paper", "max_new_tokens": 3,
                            "only_correct": False},
        "preplan_anchor": {"n_problems": 2, "max_new_tokens": 16, "n_shuffles": 20},
        "sae_circuits": {"n_latents": 16, "epochs": 20}}


def _tiny_prompts(name: str, model, tiny_ioi):
    """A random tiny model knows no facts, so head_divergence gets its prompts without the knowledge filter
    (and, with a byte tokenizer, answers scored by their first token); head_attribution gets byte-name twins."""
    if name in ("head_attribution", "sae_circuits"):
        return tiny_ioi.as_prompts()
    if name != "head_divergence":
        return None
    from workbench.analyses.head_divergence.prompts import load_facts, prompt_set
    from workbench.core.prompts import PromptSet

    facts = load_facts()[0][:3]
    base = prompt_set(facts, "counterfactual", "cf-tiny")
    tok = model_info(model).tokenizer
    first = {k: lambda m, k=k: tok(m[k], add_special_tokens=False)["input_ids"][0] for k in ("answer", "wrong")}
    meta = tuple({**m, "answer_id": first["answer"](m), "wrong_id": first["wrong"](m)} for m in base.metadata)
    return PromptSet(name=base.name, texts=base.texts, metadata=meta, extra={"facts": facts})


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.name)
def test_every_analysis_returns_valid_head_scores(tiny, tiny_ioi, spec):
    prompts = _tiny_prompts(spec.name, tiny, tiny_ioi)
    scores, record = api.run_analysis(spec.name, tiny, prompts, params=FAST.get(spec.name), progress=False)
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
    retrieval = get_analysis("retrieval_heads")
    assert retrieval.make_params({"only_correct": "False"}).only_correct is False
    with pytest.raises(WorkbenchError, match="not a valid bool"):
        retrieval.make_params({"only_correct": "maybe"})


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
    # The raw distance ranks sinks first; the non-sink distance (score) does not.
    assert scores.nlargest(10, "score")["bos_mass"].mean() < scores.nlargest(10, "distance")["bos_mass"].mean() - 0.15
    again, _ = api.run_analysis("attention_profile", smol, params={"n_prompts": 2, "n_tokens": 128},
                                progress=False)
    assert again["score"].tolist() == scores["score"].tolist()
    assert record.timings["total"] > 0
