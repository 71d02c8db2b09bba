"""Tests for workbench.edits.intervene: each edit's effect on attention and head outputs, and metrics."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.core.errors import InterventionError, PromptError, WorkbenchError
from workbench.core.heads import parse_heads
from workbench.core.prompts import PromptSet, pad_batch, tokenize
from workbench.edits.apply import bridge_hooks, prepare, resolve
from workbench.edits.intervene import (
    AblateHead,
    AttentionEdit,
    PatchHead,
    ScaleHead,
    UniformAttention,
    intervene,
    summarize,
)
from workbench.edits.kinds import Batch
from workbench.engine import hooks as H
from workbench.models.loading import model_info

TEXTS = ("The cat sat on the mat and looked around.", "Heads attend.", "A short one, then a longer one.")
LAYER, HEAD = 1, 2
EDITED = f"L{LAYER}H{HEAD}"
COLUMNS = ["prompt", "text", "metric", "before", "after", "delta"]


def prompt_set(texts=TEXTS, name="intervene-test", **kwargs) -> PromptSet:
    return PromptSet.from_texts(name, texts, **kwargs)


def captured(model, prompts: PromptSet, hook: str, edit=None) -> list[torch.Tensor]:
    """`hook` per prompt (real positions only) for one right-padded batch, under `edit` if given."""
    ids = tokenize(model, prompts)
    tokens, _ = pad_batch(ids, model_info(model).tokenizer.pad_token_id)
    fwd = []
    if edit is not None:
        edits = resolve([edit], prompts)
        batch = Batch(tuple(range(len(ids))), tuple(map(tuple, ids)), prepare(model, prompts, edits))
        fwd = bridge_hooks(model, edits, batch)
    with model.hooks(fwd_hooks=fwd):
        _, cache = model.run_with_cache(tokens, names_filter=lambda name: name == hook)
    act = cache[hook]
    if hook.endswith("hook_pattern"):
        return [act[j, :, : len(x), : len(x)] for j, x in enumerate(ids)]
    return [act[j, : len(x)] for j, x in enumerate(ids)]


def edited_patterns(model, edit, prompts=None):
    """(clean, edited) attention patterns `[H, n, n]` of LAYER, one pair per prompt."""
    prompts = prompts or prompt_set()
    clean, edited = captured(model, prompts, H.pattern(LAYER)), captured(model, prompts, H.pattern(LAYER), edit)
    return list(zip(clean, edited, strict=True))


def assert_other_heads_unchanged(clean: torch.Tensor, edited: torch.Tensor, head_dim: int = 0) -> None:
    others = [h for h in range(clean.shape[head_dim]) if h != HEAD]
    torch.testing.assert_close(edited.index_select(head_dim, torch.tensor(others)),
                               clean.index_select(head_dim, torch.tensor(others)), atol=1e-6, rtol=0)


def zerotuning(a0: torch.Tensor, s: float) -> torch.Tensor:
    return s * a0 / ((s - 1) * a0 + 1)


# ---- the before/after table -------------------------------------------------------------------------
def test_scale_one_changes_nothing(tiny):
    table = intervene(tiny, prompt_set(), ScaleHead(("L0H1", EDITED), alpha=1.0))
    assert list(table.columns) == COLUMNS and len(table) == len(TEXTS)
    assert (table["metric"] == "loss").all() and (table["before"] > 0).all()
    assert table["delta"].abs().max() < 1e-5
    assert table.attrs["edits"] == ["scale[α=1] L0H1,L1H2"]


def test_zero_ablation_equals_scale_zero(tiny):
    prompts = prompt_set()
    ablated = intervene(tiny, prompts, AblateHead((EDITED, "L0H0")))
    scaled = intervene(tiny, prompts, ScaleHead(("L0H0", EDITED), alpha=0.0))
    torch.testing.assert_close(torch.tensor(ablated["after"].values), torch.tensor(scaled["after"].values))
    assert ablated["delta"].abs().min() > 1e-4, "ablating two heads must change the loss"
    summary = summarize(ablated)
    assert summary["n"] == len(TEXTS) and summary["delta"] == pytest.approx(ablated["delta"].mean())


def test_batch_size_does_not_change_the_table(tiny):
    prompts = prompt_set()
    edit = UniformAttention((EDITED,))
    one = intervene(tiny, prompts, edit, batch_size=1)
    many = intervene(tiny, prompts, edit, batch_size=8)
    torch.testing.assert_close(torch.tensor(one[["before", "after"]].values),
                               torch.tensor(many[["before", "after"]].values), atol=1e-5, rtol=0)


# ---- attention edits --------------------------------------------------------------------------------
def test_uniform_attention_averages_visible_keys(tiny):
    for clean, edited in edited_patterns(tiny, UniformAttention(parse_heads(EDITED))):
        n = clean.shape[-1]
        expected = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
        torch.testing.assert_close(edited[HEAD], expected, atol=1e-6, rtol=0)
        assert_other_heads_unchanged(clean, edited)


@pytest.mark.parametrize("scale", [0.25, 3.0])
def test_attention_scale_follows_zerotuning(tiny, scale):
    """a0' = s·a0/((s−1)·a0+1) for every query; the other keys keep their proportions."""
    for clean, edited in edited_patterns(tiny, AttentionEdit(parse_heads(EDITED), (0,), scale=scale)):
        before, after = clean[HEAD], edited[HEAD]
        torch.testing.assert_close(after[:, 0], zerotuning(before[:, 0], scale), atol=1e-6, rtol=0)
        ratio = (1 - after[1:, 0]) / (1 - before[1:, 0])
        torch.testing.assert_close(after[1:, 1:], before[1:, 1:] * ratio[:, None], atol=1e-6, rtol=0)
        assert_other_heads_unchanged(clean, edited)


def test_attention_scale_zero_removes_the_key(tiny):
    for clean, edited in edited_patterns(tiny, AttentionEdit(parse_heads(EDITED), (0,), scale=0.0)):
        after = edited[HEAD]
        assert after[1:, 0].abs().max() == 0
        torch.testing.assert_close(after[1:].sum(-1), torch.ones(after.shape[0] - 1))
        torch.testing.assert_close(after[1:, 1:], clean[HEAD][1:, 1:] / (1 - clean[HEAD][1:, :1]), atol=1e-6,
                                   rtol=0)
        assert_other_heads_unchanged(clean, edited)


def test_attention_scale_zero_leaves_query_zero_alone(tiny):
    for clean, edited in edited_patterns(tiny, AttentionEdit(parse_heads(EDITED), (0,), scale=0.0)):
        torch.testing.assert_close(edited[HEAD][0], clean[HEAD][0])  # one-hot on key 0
        assert torch.triu(edited[HEAD], diagonal=1).abs().max() == 0, "attention to future keys"


def test_negative_key_counts_from_each_prompt_end(tiny):
    scale = 4.0
    for clean, edited in edited_patterns(tiny, AttentionEdit(parse_heads(EDITED), (-2,), scale=scale)):
        n = clean.shape[-1]
        before, after = clean[HEAD], edited[HEAD]
        torch.testing.assert_close(after[: n - 2], before[: n - 2], atol=1e-6, rtol=0)
        torch.testing.assert_close(after[n - 2:, n - 2], zerotuning(before[n - 2:, n - 2], scale), atol=1e-6,
                                   rtol=0)


def test_logit_bias_equals_scale(tiny):
    heads = parse_heads(EDITED)
    prompts = prompt_set()
    by_scale = captured(tiny, prompts, H.pattern(LAYER), AttentionEdit(heads, (0, 1), scale=2.5))
    by_bias = captured(tiny, prompts, H.pattern(LAYER), AttentionEdit(heads, (0, 1), logit_bias=math.log(2.5)))
    for a, b in zip(by_scale, by_bias, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


# ---- head-output edits ------------------------------------------------------------------------------
def test_mean_ablation_uses_the_reference_mean(tiny):
    prompts = prompt_set()
    reference = prompt_set(("Reference text one.", "And a second reference prompt."), "reference")
    z_ref = torch.cat(captured(tiny, reference, H.z(LAYER)), dim=0)  # [all tokens, H, D]
    mean = z_ref[:, HEAD].mean(0)
    clean = captured(tiny, prompts, H.z(LAYER))
    edited = captured(tiny, prompts, H.z(LAYER), AblateHead(parse_heads(EDITED), mode="mean", reference=reference))
    for before, after in zip(clean, edited, strict=True):
        torch.testing.assert_close(after[:, HEAD], mean.expand_as(after[:, HEAD]), atol=1e-5, rtol=0)
        assert_other_heads_unchanged(before, after, head_dim=1)


def test_patch_from_identical_source_changes_nothing(tiny):
    prompts = prompt_set()
    table = intervene(tiny, prompts, PatchHead((EDITED, "L0H3"), prompt_set(name="same-texts")))
    assert table["delta"].abs().max() < 1e-5


def test_patch_copies_the_source_head_output(tiny):
    prompts = prompt_set()
    source = prompt_set(tuple(t[::-1] for t in TEXTS), "reversed")  # same byte lengths
    clean = captured(tiny, prompts, H.z(LAYER))
    patched = captured(tiny, prompts, H.z(LAYER), PatchHead(parse_heads(EDITED), source))
    for before, after, src in zip(clean, patched, captured(tiny, source, H.z(LAYER)), strict=True):
        torch.testing.assert_close(after[:, HEAD], src[:, HEAD], atol=1e-5, rtol=0)
        assert_other_heads_unchanged(before, after, head_dim=1)


def test_patch_source_of_other_lengths(tiny):
    source = prompt_set((TEXTS[0], TEXTS[1] + " longer", TEXTS[2]), "misaligned")
    with pytest.raises(InterventionError, match=r"prompts \[1\] differ in token length"):
        intervene(tiny, prompt_set(), PatchHead((EDITED,), source))


def test_patch_source_of_wrong_size(tiny):
    with pytest.raises(InterventionError, match="has 2 prompts for 3 prompts"):
        intervene(tiny, prompt_set(), PatchHead((EDITED,), prompt_set(TEXTS[:2], "two")))


# ---- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("edit", "error", "match"), [
    (AblateHead(("L99H0",)), InterventionError, r"L99H0 do not exist.*layers 0\.\.1 and heads 0\.\.3"),
    (ScaleHead(("L0H4",), alpha=2.0), InterventionError, r"L0H4 do not exist"),
    (AblateHead(("3.5",)), WorkbenchError, "malformed head label '3.5'"),
    (AblateHead(()), InterventionError, "names no heads"),
    (AblateHead((EDITED,), mode="bogus"), InterventionError, "mode must be 'zero' or 'mean'"),
    (AttentionEdit((EDITED,), (0,)), InterventionError, "exactly one of scale= or logit_bias="),
    (AttentionEdit((EDITED,), (0,), scale=2.0, logit_bias=1.0), InterventionError, "exactly one of"),
    (AttentionEdit((EDITED,), (0,), scale=-1.0), InterventionError, "finite number >= 0"),
    (AttentionEdit((EDITED,), (50,), scale=2.0), InterventionError, "Key position 50 is outside a prompt"),
    ([], InterventionError, "No edits given"),
])
def test_bad_edits_raise_clear_errors(tiny, edit, error, match):
    with pytest.raises(error, match=match):
        intervene(tiny, prompt_set(), edit)


# ---- metrics ----------------------------------------------------------------------------------------
def qa_prompts(**meta) -> PromptSet:
    return prompt_set(("The answer is", "So the answer is"), "qa", metadata=[meta, meta])


def test_logit_diff_is_answer_minus_wrong_logit(tiny):
    prompts = qa_prompts(answer="a", wrong="b")
    table = intervene(tiny, prompts, ScaleHead((EDITED,), alpha=1.0), metric="logit_diff")
    tok = model_info(tiny).tokenizer
    a, b = (tok.convert_tokens_to_ids(w) for w in ("a", "b"))
    for row, ids in zip(table.itertuples(), tokenize(tiny, prompts), strict=True):
        last = tiny(torch.tensor([ids]))[0, -1].detach()
        assert row.metric == "logit_diff"
        assert row.before == pytest.approx(float(last[a] - last[b]), abs=1e-4)
        assert row.after == pytest.approx(row.before, abs=1e-5)


@pytest.mark.parametrize(("meta", "match"), [
    ({}, "needs 'answer'"),
    ({"answer": "a"}, "needs 'wrong'"),
    ({"answer": "ab", "wrong": "c"}, r"'ab' is not a single token \(splits into 2\)"),
])
def test_logit_diff_needs_single_token_answers(tiny, meta, match):
    with pytest.raises(PromptError, match=match):
        intervene(tiny, qa_prompts(**meta), AblateHead((EDITED,)), metric="logit_diff")


def test_unknown_metric(tiny):
    with pytest.raises(PromptError, match="Unknown metric 'accuracy'; choose one of logit_diff"):
        intervene(tiny, prompt_set(), AblateHead((EDITED,)), metric="accuracy")


# ---- real model -------------------------------------------------------------------------------------
@pytest.mark.real_model
def test_ablating_layer0_heads_raises_loss_on_smollm(smol):
    from workbench.core.natural_text import text_chunks

    heads = ",".join(f"L0H{h}" for h in range(9))
    table = intervene(smol, text_chunks(smol, 2, 64), AblateHead(parse_heads(heads)))
    assert len(table) == 2 and (table["before"] < 8).all()
    assert (table["delta"] > 0).all() and summarize(table)["delta"] > 0.1
