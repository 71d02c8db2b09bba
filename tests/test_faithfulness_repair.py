"""Faithfulness (mean ablation outside a circuit) and the Colored Objects repair edit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import api
from workbench.analyses.circuits.faithfulness import MeanAblation, faithfulness
from workbench.analyses.circuits.repair import FinalQueryBias, evaluate, wrong_color_positions
from workbench.core.contrast import ContrastSet
from workbench.core.errors import WorkbenchError
from workbench.core.prompts import pad_batch, tokenize
from workbench.edits.apply import bridge_hooks
from workbench.edits.kinds import Batch
from workbench.engine import hooks as H
from workbench.models.loading import model_info


def test_mean_ablation_endpoints(tiny, tiny_ioi):
    cs = tiny_ioi
    info = model_info(tiny)
    ablation = MeanAblation(tiny, cs)
    every = [f"L{lay}H{h}" for lay in range(info.n_layers) for h in range(info.n_heads)]
    assert ablation.metric(every) == pytest.approx(ablation.metric(None), abs=1e-5)  # keep all = clean
    f = faithfulness(tiny, cs, every[:3], n_random=4, seed=0)
    assert f["all_ablated"] == pytest.approx(ablation.metric(()), abs=1e-5)
    assert f["circuit"] == pytest.approx(ablation.metric(every[:3]), abs=1e-5)
    from workbench.results.circuits import random_circuits

    norm = [(ablation.metric(c) - f["all_ablated"]) / (f["clean"] - f["all_ablated"])
            for c in random_circuits(info.n_layers, info.n_heads, 3, 4, 0)]  # the same random circuits, by hand
    assert f["random_normalised_mean"] == pytest.approx(np.mean(norm), abs=1e-5)
    assert f["random_above_circuit"] == sum(x >= f["normalised"] - 1e-9 for x in norm)
    with pytest.raises(WorkbenchError, match="n_random"):
        faithfulness(tiny, cs, every[:3], n_random=0)


def test_mean_ablation_uses_the_corrupted_mean_at_each_position(tiny, tiny_ioi):
    """Ablating every head of layer 0 = replacing layer 0's z by the corrupted prompts' per-position mean."""
    cs = tiny_ioi
    info = model_info(tiny)
    ablation = MeanAblation(tiny, cs)
    keep = [f"L{lay}H{h}" for lay in range(1, info.n_layers) for h in range(info.n_heads)]
    ids = tokenize(tiny, cs.corrupt)
    tokens, _ = pad_batch(ids, 0)
    _, cache = tiny.run_with_cache(tokens, names_filter=lambda n: n == H.z(0))
    mean = cache[H.z(0)].mean(0)  # all twins have one length here
    assert len({len(x) for x in ids}) == 1

    def patch(z, hook=None):
        return mean.expand_as(z).clone()
    clean_ids = tokenize(tiny, cs.clean)
    with torch.no_grad():
        logits = tiny.run_with_hooks(pad_batch(clean_ids, 0)[0], fwd_hooks=[(H.z(0), patch)])[:, -1]
    want = np.mean([float(logits[i, m["answer_id"]] - logits[i, m["wrong_ids"]].max())
                    for i, m in enumerate(cs.clean.metadata)])
    assert ablation.metric(keep) == pytest.approx(want, abs=1e-4)


def _colored_tiny(model) -> ContrastSet:
    tok = model_info(model).tokenizer
    one = lambda ch: tok(ch, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    clean = ["Q: a r x, a b y. x?\nA: R\nQ: a g x, a p y. x?\nA:"]
    corrupt = ["Q: a r x, a b y. x?\nA: R\nQ: a g x, a p y. y?\nA:"]
    meta = [{"answer_id": one("G"), "wrong_ids": [one("P")]}]
    return ContrastSet("co-tiny", api.PromptSet.from_texts("co", clean, metadata=meta),
                       api.PromptSet.from_texts("co-c", corrupt, metadata=meta))


def test_repair_edit_biases_only_the_last_query_towards_wrong_colors(tiny):
    cs = _colored_tiny(tiny)
    (keys,) = wrong_color_positions(tiny, cs)
    ids = tokenize(tiny, cs.clean)[0]
    tok = model_info(tiny).tokenizer
    assert [tok.decode([ids[k]]) for k in keys] == ["p"]  # the one wrong color ('p') of the last question
    edit = FinalQueryBias(((1, 2),), (keys,), 2.0)
    tokens = torch.tensor([ids])
    _, clean = tiny.run_with_cache(tokens, names_filter=lambda n: n == H.pattern(1))
    with tiny.hooks(fwd_hooks=bridge_hooks(tiny, [edit], Batch((0,), (tuple(ids),)))):
        _, edited = tiny.run_with_cache(tokens, names_filter=lambda n: n == H.pattern(1))
    c, e = clean[H.pattern(1)][0], edited[H.pattern(1)][0]
    torch.testing.assert_close(e[:, :-1], c[:, :-1])  # earlier queries untouched
    torch.testing.assert_close(e[[0, 1, 3], -1], c[[0, 1, 3], -1])  # other heads untouched
    k = keys[0]
    a = c[2, -1, k]
    assert float(e[2, -1, k]) == pytest.approx(float(np.e ** 2 * a / ((np.e ** 2 - 1) * a + 1)), rel=1e-4)
    acc, ld = evaluate(tiny, cs, edit)
    assert np.isfinite(ld) and acc == float(ld > 0)  # one prompt: right iff the answer beats the wrong color


@pytest.mark.real_model
def test_smollm2_ioi_circuit_is_more_faithful_than_random_circuits(smol):
    from workbench.analyses.circuits.tasks import make_task
    from workbench.results.circuits import load_circuit

    circuit = load_circuit("smollm2-135m_ioi")
    f = faithfulness(smol, make_task(smol, "ioi", 8, seed=1), circuit.heads, n_random=3)
    assert f["kept"] > f["random_kept_mean"] + 0.2 and f["normalised"] > f["random_normalised_mean"]
    assert f["clean"] > 1.0 and f["all_ablated"] < f["clean"]


@pytest.mark.real_model
def test_smollm2_repair_search_runs_on_held_out_prompts(smol):
    from workbench.analyses.circuits.repair import repair
    from workbench.analyses.circuits.tasks import make_task

    fit, held = make_task(smol, "colored_objects", 12, seed=3).split(0.5, 0)
    result = repair(smol, fit, held, ["L15H7", "L17H4"], max_heads=1, progress=False)
    assert len(result["heads"]) <= 1 and len(result["table"]) == 2
    assert all(0 <= x <= 1 for x in (result["before"][0], result["after"][0]))
    assert set(result["trials"]["head"]) == {"L15H7", "L17H4"}
