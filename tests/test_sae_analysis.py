"""SAE circuit discovery on models: head outputs add up to the attention output; runs on the tiny model
and on SmolLM2 IOI against the committed patching circuit."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import api
from workbench.analyses.circuits.sae.analysis import head_outputs
from workbench.core.prompts import pad_batch, tokenize
from workbench.engine import hooks as H
from workbench.models.loading import model_info


@pytest.mark.parametrize("arch", ["tiny", "tiny_gpt2"])  # GPT-2: Conv1D W_O, the reference circuits' model
@pytest.mark.parametrize("positions", ["mean", "last"])
def test_head_outputs_sum_to_the_attention_output(request, tiny_ioi, positions, arch):
    cs = tiny_ioi
    tiny = request.getfixturevalue(arch)
    ids = tokenize(tiny, cs.clean)
    out = head_outputs(tiny, ids, positions)  # [N, L, H, d_model]
    tokens, _ = pad_batch(ids, 0)
    _, cache = tiny.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_attn_out"))
    info = model_info(tiny)
    for layer in range(info.n_layers):
        attn = cache[H.attn_out(layer)]  # [N, T, d]
        for i, seq in enumerate(ids):
            want = attn[i, : len(seq)].mean(0) if positions == "mean" else attn[i, len(seq) - 1]
            np.testing.assert_allclose(out[i, layer].sum(0).numpy(), want.detach().numpy(), atol=1e-4)


def test_sae_circuits_is_deterministic_under_a_seed(tiny, tiny_ioi):
    params = {"n_latents": 16, "epochs": 30}
    prompts = tiny_ioi.as_prompts()
    a, _ = api.run_analysis("sae_circuits", tiny, prompts, params=params, save=False, progress=False)
    b, _ = api.run_analysis("sae_circuits", tiny, prompts, params=params, save=False, progress=False)
    assert a["score"].tolist() == b["score"].tolist()
    assert a.attrs["summary"]["reference"] is None  # no tiny circuit is committed


@pytest.mark.real_model
def test_smollm2_ioi_sae_scores_are_evaluated_against_the_patching_circuit(smol):
    params = {"task": "ioi", "n_examples": 5, "epochs": 100}
    scores, _ = api.run_analysis("sae_circuits", smol, params=params, save=False, progress=False)
    s = scores.attrs["summary"]
    assert s["reference"] == "smollm2-135m_ioi" and scores["in_reference"].sum() == 14
    from workbench.analyses.circuits.sae import roc_auc

    mask = scores["in_reference"].to_numpy()
    assert s["sae"]["roc_auc"] == pytest.approx(roc_auc(scores["raw_score"].to_numpy(), mask))
    assert s["baseline"]["roc_auc"] == pytest.approx(roc_auc(scores["baseline_score"].to_numpy(), mask))
    assert s["baseline"]["roc_auc"] > 0.8  # 0.90 ± 0.004 over 5 seeds of 10 prompts: the circuit heads stand out
    assert 0 < s["sae"]["best_f1"] <= 1 and 0 < s["baseline"]["best_f1"] <= 1
    assert s["n_distinct_codes"] > 1  # the shared SAE does not collapse to one code


def test_default_reference_finds_the_published_gpt2_circuits():
    from workbench.analyses.circuits.sae.analysis import default_reference

    assert default_reference("openai-community/gpt2", "ioi") == "gpt2-small_ioi"
    assert default_reference("openai-community/gpt2", "greater_than") == "gpt2-small_greater_than"
    assert default_reference("smollm2-135m", "docstring") == "smollm2-135m_docstring"
    assert default_reference("openai-community/gpt2", "docstring") is None
