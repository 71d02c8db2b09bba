"""Sink interventions on hand-checkable cases: γ scaling, sink removal, ACT calibration, massive-dim edits."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.core.errors import InterventionError
from workbench.core.prompts import PromptSet, pad_batch, tokenize
from workbench.edits.apply import bridge_hooks, run_metric
from workbench.edits.kinds import AttentionEdit, Batch, MassiveDimEdit, SinkCalibration
from workbench.engine import hooks as H
from workbench.engine.metrics import get_metric
from workbench.models.loading import model_info

TEXTS = ("The cat sat on the mat and looked around.", "Heads attend to sinks.")
LAYER, HEAD = 1, 2


def prompts() -> PromptSet:
    return PromptSet.from_texts("sink-edit-test", TEXTS)


def captured(model, hook: str, edits=()):
    ps = prompts()
    ids = tokenize(model, ps)
    tokens, _ = pad_batch(ids, model_info(model).tokenizer.pad_token_id)
    fwd = bridge_hooks(model, list(edits), Batch(tuple(range(len(ids))), tuple(map(tuple, ids)))) if edits else []
    with model.hooks(fwd_hooks=fwd):
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name == hook)
    return [cache[hook][j] for j in range(len(ids))], [len(x) for x in ids]


def test_initial_token_scaling_follows_zerotuning(tiny):
    gamma = 0.25
    edit = AttentionEdit(((LAYER, HEAD),), keys=(0,), logit_bias=math.log(gamma))
    (clean, _), (edited, lengths) = captured(tiny, H.pattern(LAYER)), captured(tiny, H.pattern(LAYER), [edit])
    for c, e, n in zip(clean, edited, lengths, strict=True):
        a0 = c[HEAD, 1:n, 0]
        torch.testing.assert_close(e[HEAD, 1:n, 0], gamma * a0 / ((gamma - 1) * a0 + 1), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(e[0, :n, :n], c[0, :n, :n])  # other heads untouched


def test_sink_removal_zeroes_sink_keys_and_renormalises(tiny):
    edit = AttentionEdit(((LAYER, HEAD),), keys=(0, 1), scale=0.0)
    (clean, _), (edited, lengths) = captured(tiny, H.pattern(LAYER)), captured(tiny, H.pattern(LAYER), [edit])
    for c, e, n in zip(clean, edited, lengths, strict=True):
        rows = slice(2, n)  # queries that see another key
        assert e[HEAD, rows, :2].abs().max() < 1e-6
        torch.testing.assert_close(e[HEAD, rows, :n].sum(-1), torch.ones(n - 2), atol=1e-5, rtol=0)
        rest = c[HEAD, rows, 2:n]
        torch.testing.assert_close(e[HEAD, rows, 2:n], rest / rest.sum(-1, keepdim=True), atol=1e-5, rtol=1e-4)


def test_act_calibration_scales_per_prompt_keys_by_beta(tiny):
    beta = 0.4
    keys = ({(LAYER, HEAD): [3]}, {(LAYER, HEAD): [2, 4]})  # different sink keys per prompt
    edit = SinkCalibration(((LAYER, HEAD),), keys, beta)
    (clean, _), (edited, lengths) = captured(tiny, H.pattern(LAYER)), captured(tiny, H.pattern(LAYER), [edit])
    for row, (c, e, n) in enumerate(zip(clean, edited, lengths, strict=True)):
        k = keys[row][(LAYER, HEAD)]
        q = slice(max(k), n)
        mass = c[HEAD, q, k].sum(-1)
        want = beta * c[HEAD, q, k] / ((beta - 1) * mass + 1)[:, None]
        torch.testing.assert_close(e[HEAD, q, k], want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(e[HEAD, :n, :n].sum(-1), torch.ones(n), atol=1e-5, rtol=0)
        torch.testing.assert_close(e[1, :n, :n], c[1, :n, :n])


def test_massive_dim_edit_zero_and_mean(tiny):
    (clean, lengths) = captured(tiny, H.resid_pre(1))
    threshold = float(clean[0][0, 5].abs()) - 1e-4  # hit token 0 of prompt 0 at least
    zero = MassiveDimEdit(layer=0, dims=(5, 9), mode="zero", threshold=0.0)
    mean = MassiveDimEdit(layer=0, dims=(5,), mode="mean", threshold=threshold, means=(123.0,))
    (zeroed, _), (meaned, _) = captured(tiny, H.resid_pre(1), [zero]), captured(tiny, H.resid_pre(1), [mean])
    for c, z, m, n in zip(clean, zeroed, meaned, lengths, strict=True):
        assert z[:n, [5, 9]].abs().max() == 0
        torch.testing.assert_close(z[:n, :5], c[:n, :5])
        hit = c[:n, 5].abs() > threshold
        assert torch.all(m[:n, 5][hit] == 123.0)
        torch.testing.assert_close(m[:n, 5][~hit], c[:n, 5][~hit])
    assert bool((clean[0][0, 5].abs() > threshold))


def test_massive_dim_mean_is_per_token(tiny):
    ids = tokenize(tiny, prompts())
    bos = ids[0][0]
    edit = MassiveDimEdit(layer=0, dims=(5, 9), mode="mean", threshold=0.0, means=(1.0, 2.0),
                          token_means=((bos, (-7.0, 8.0)),))
    (before, _), (edited, lengths) = captured(tiny, H.resid_pre(1)), captured(tiny, H.resid_pre(1), [edit])
    for seq, clean, e, n in zip(ids, before, edited, lengths, strict=True):
        is_bos = torch.tensor([t == bos for t in seq])
        assert is_bos.any() and (~is_bos).any()
        assert torch.all(e[:n][is_bos][:, [5, 9]] == torch.tensor([-7.0, 8.0]))
        torch.testing.assert_close(e[:n][~is_bos], clean[:n][~is_bos])  # tokens without a mean are kept


def test_massive_edits_carry_per_token_means():
    import pandas as pd

    from workbench.analyses.attention_sinks.report import massive_dims, massive_edits

    table = pd.DataFrame({"prompt": 0, "layer": [3, 3, 3, 4], "pos": [0, 5, 9, 0], "dim": 7,
                          "value": [100.0, 40.0, 60.0, 90.0], "median_abs": 1.0, "ratio": 50.0,
                          "token": ["<s>", " the", " the", "<s>"], "token_id": [1, 2, 2, 1]})
    (edit,) = massive_edits(massive_dims(table), "mean")
    assert edit.layer == 3 and edit.dims == (7,)
    assert edit.means == pytest.approx((200 / 3,))
    assert dict(edit.token_means) == {1: (100.0,), 2: (50.0,)}


def test_run_edits_changes_loss_only_under_edits(tiny):
    loss = get_metric("loss")
    clean = run_metric(tiny, prompts(), loss)
    same = run_metric(tiny, prompts(), loss, [MassiveDimEdit(0, (3,), "zero", threshold=1e9)])
    edited = run_metric(tiny, prompts(), loss, [MassiveDimEdit(0, tuple(range(32)), "zero")])
    assert clean == pytest.approx(same, abs=1e-5)
    assert all(abs(a - b) > 1e-3 for a, b in zip(clean, edited, strict=True))


def test_bad_edits_fail_clearly(tiny):
    loss = get_metric("loss")
    with pytest.raises(InterventionError, match="one mean per dimension"):
        run_metric(tiny, prompts(), loss, [MassiveDimEdit(0, (1,), "mean")])
    with pytest.raises(InterventionError, match="Layer 9"):
        run_metric(tiny, prompts(), loss, [MassiveDimEdit(9, (1,), "zero")])
    with pytest.raises(InterventionError, match="for 1 prompts, the prompt set has 2"):
        run_metric(tiny, prompts(), loss, [SinkCalibration(((1, 0),), ({},), 0.4)])
