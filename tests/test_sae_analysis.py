"""SAE circuit discovery on models: head outputs add up to the attention output; runs on the tiny model
and on SmolLM2 IOI against the committed patching circuit."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import api
from workbench.analyses.sae_circuits import head_outputs
from workbench.engine import hooks as H
from workbench.engine.prompts import pad_batch, tokenize
from workbench.models import model_info


@pytest.mark.parametrize("positions", ["mean", "last"])
def test_head_outputs_sum_to_the_attention_output(tiny, tiny_ioi, positions):
    cs = tiny_ioi
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
    params = {"n_latents": 16, "epochs": 30, "n_examples": 3}
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
    for method in ("sae", "baseline"):
        assert 0 <= s[method]["roc_auc"] <= 1 and 0 < s[method]["best_f1"] <= 1
    assert s["n_distinct_codes"] > 1  # the shared SAE does not collapse to one code
