"""Patching engine: activation patching against the bridge's own hooks, attribution patching against a
finite difference, path patching against activation patching where they must agree; task checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from float64 import default_float64, tiny_in_float64

from workbench import api
from workbench.analyses.circuits import patching
from workbench.core.contrast import ContrastSet, flag_unchanged_answers
from workbench.core.errors import PromptError, WorkbenchError
from workbench.edits.apply import run_metric
from workbench.edits.kinds import PatchHead
from workbench.engine.head_io import last_logits
from workbench.engine.metrics import get_metric, metric_values
from workbench.models.loading import model_info


@pytest.mark.parametrize("arch", ["tiny", "tiny_gpt2"])
def test_activation_patching_matches_patching_through_the_bridge(request, tiny_ioi, arch):
    cs = tiny_ioi
    tiny = request.getfixturevalue(arch)
    base = patching.baseline(tiny, cs)
    scores = patching.activation_patching(tiny, cs, base, progress=False)
    metric = get_metric("logit_diff")
    clean = np.mean(run_metric(tiny, cs.clean, metric))
    assert base.m_clean == pytest.approx(clean, abs=1e-4)
    for layer, head in [(0, 1), (1, 3)]:
        patched = np.mean(run_metric(tiny, cs.clean, metric, [PatchHead(((layer, head),), cs.corrupt)]))
        want = (patched - base.m_clean) / (base.m_corrupt - base.m_clean)
        assert scores[layer, head] == pytest.approx(want, abs=1e-4)


@pytest.fixture(scope="module")
def tiny64():
    """A fresh tiny model in float64, so a finite difference checks attribution patching, not rounding."""
    return tiny_in_float64()


@pytest.mark.parametrize("layer", [0, 1])  # layer 0's effect also runs through layer 1's attention
def test_attribution_patching_is_the_first_order_term(tiny64, tiny_ioi, layer):
    """Attribution patching equals dM/dε of M(z_clean + ε·(z_corrupt − z_clean)) at ε = 0. In float64 a
    central difference with ε = 1e-4 has truncation error O(ε²) ≈ 1e-8 and rounding error ≈ 1e-16 / ε, far
    below the 1e-6 tolerance."""
    tiny, cs = tiny64, tiny_ioi
    assert model_info(tiny).stream_model.dtype == torch.float64
    with default_float64():
        base = patching.baseline(tiny, cs)
        attr = patching.attribution_patching(tiny, cs, base)
    head, eps = 2, 1e-4

    def metric_at(step: float) -> float:
        total = 0.0
        for g, rows in enumerate(base.groups):
            diff = base.corrupt_z[g][layer] - base.clean_z[g][layer]

            def nudge(lay, z, diff=diff):
                if lay != layer:
                    return z
                z = z.clone()
                z[:, :, head] += step * diff[:, :, head]
                return z
            with torch.no_grad():
                logits = last_logits(tiny, base.suffix_ids[g], nudge, base.prefixes[g])
            total += float(metric_values(logits, [cs.clean.metadata[i] for i in rows], cs.metric).sum())
        return total / len(cs)

    with default_float64():
        slope = (metric_at(eps) - metric_at(-eps)) / (2 * eps)
    assert abs(slope) > 1e-3  # the head matters, so the comparison is not 0 ≈ 0
    assert attr[layer, head] == pytest.approx(float(base.normalise(base.m_clean + slope)), rel=1e-6, abs=1e-9)


def test_direct_path_of_the_last_layer_equals_activation_patching(tiny, tiny_ioi):
    cs = tiny_ioi
    base = patching.baseline(tiny, cs)
    info = model_info(tiny)
    last = info.n_layers - 1
    act = patching.activation_patching(tiny, cs, base, layers=[last], progress=False)
    senders = [f"L{last}H{h}" for h in range(info.n_heads)]
    path = patching.path_patching(tiny, cs, [], base, senders=senders, progress=False)
    np.testing.assert_allclose(path[last], act[last], atol=1e-4)
    assert np.isnan(path[0]).all()
    with pytest.raises(WorkbenchError, match="No sender heads"):
        patching.path_patching(tiny, cs, ["L0H0"], base, progress=False)


def test_receivers_in_the_last_layer_act_only_through_the_final_position(tiny, tiny_ioi):
    """Last-layer heads reach the logits only at the final position, so patching them there equals patching
    them everywhere."""
    base = patching.baseline(tiny, tiny_ioi)
    info = model_info(tiny)
    last = info.n_layers - 1
    receivers = [f"L{last}H{h}" for h in range(info.n_heads)]
    all_pos = patching.path_patching(tiny, tiny_ioi, receivers, base, progress=False)
    last_pos = patching.path_patching(tiny, tiny_ioi, receivers, base, receiver_positions="last", progress=False)
    np.testing.assert_allclose(last_pos, all_pos, atol=1e-5, equal_nan=True)
    assert np.isfinite(all_pos[:last]).all() and np.abs(all_pos[:last]).max() > 1e-3
    with pytest.raises(WorkbenchError, match="receiver_positions"):
        patching.path_patching(tiny, tiny_ioi, receivers, base, receiver_positions="first", progress=False)


def test_bad_twins_fail_or_are_flagged(tiny, tiny_ioi):
    cs = tiny_ioi
    same = ContrastSet("same", cs.clean, cs.clean)
    with pytest.raises(PromptError, match="identical"):
        patching.baseline(tiny, same)
    longer = api.PromptSet.from_texts("long", [t + " now" for t in cs.corrupt.texts], metadata=cs.clean.metadata)
    with pytest.raises(PromptError, match="differ in token length"):
        patching.baseline(tiny, ContrastSet("x", cs.clean, longer))
    with pytest.raises(PromptError, match="2 clean prompts but 4"):
        ContrastSet("x", cs.clean.__class__.from_texts("c", cs.clean.texts[:2], metadata=cs.clean.metadata[:2]),
                    cs.corrupt)
    meta = [{**m, "corrupt_answer_id": m["answer_id"] if i == 1 else -1} for i, m in enumerate(cs.clean.metadata)]
    flagged = ContrastSet("f", api.PromptSet.from_texts("f", cs.clean.texts, metadata=meta), cs.corrupt)
    assert flag_unchanged_answers(flagged) == [1]
    with pytest.raises(PromptError, match="no corrupted twins"):
        ContrastSet.from_prompts(cs.clean)
    assert ContrastSet.from_prompts(cs.as_prompts()).corrupt.texts == cs.corrupt.texts


@pytest.mark.real_model
def test_multi_token_names_are_rejected_with_a_list(smol):
    from workbench.analyses.circuits.tasks import ioi

    with pytest.raises(PromptError, match="Bartholomew.*Xiomara|Xiomara.*Bartholomew"):
        ioi.make(smol, n=4, names=("Mary", "John", "Bartholomew", "Xiomara"))


@pytest.mark.real_model
def test_smollm2_tasks_have_working_twins(smol):
    from workbench.analyses.circuits.tasks import TASKS, make_task

    for task in TASKS:
        cs = make_task(smol, task, n=6, seed=1)
        base = patching.baseline(smol, cs)
        assert base.m_corrupt < base.m_clean, task  # every corruption removes some of the behaviour
        assert not flag_unchanged_answers(cs), task
    ioi = patching.baseline(smol, make_task(smol, "ioi", n=12))
    assert (ioi.clean_metric > 0).mean() >= 0.75 and ioi.m_clean > 1.5


@pytest.mark.real_model
def test_smollm2_ioi_late_heads_carry_the_effect_and_attribution_tracks_them(smol):
    from workbench.analyses.circuits.tasks import make_task

    cs = make_task(smol, "ioi", n=8)
    base = patching.baseline(smol, cs)
    act = patching.activation_patching(smol, cs, base, layers=range(17, 30), progress=False)
    attr = patching.attribution_patching(smol, cs, base)
    late = act[17:]
    assert np.nanmax(late) > 0.2  # some single head moves the logit difference a fifth of the way
    top = np.unravel_index(np.nanargmax(late), late.shape)
    assert attr[17:][top] > 0.1  # … and attribution patching sees that head too
