"""Retrieval heads: span matching, ROUGE, copy-paste events, reducer-vs-pattern scores, stream edits, bad input."""

from __future__ import annotations

import pytest
import torch

from workbench.analyses.retrieval_heads.checks import kv_bytes, kv_ranking
from workbench.analyses.retrieval_heads.prompts import Needle, niah_prompts
from workbench.analyses.retrieval_heads.score import (
    Params,
    aggregate,
    copy_paste_events,
    find_answer_span,
    rouge1_recall,
    score_trials,
)
from workbench.core.errors import InterventionError, PromptError
from workbench.core.heads import parse_heads
from workbench.core.prompts import PromptSet
from workbench.edits.apply import bridge_hooks, editing
from workbench.edits.kinds import StreamingWindow, UniformAttention
from workbench.engine import hooks
from workbench.engine.decode import greedy_generate
from workbench.engine.reducers import ReducerRequest
from workbench.engine.run import stream_forward
from workbench.models.loading import model_info


def _ids(model, text: str) -> torch.Tensor:
    tok = model_info(model).tokenizer
    return torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]])


# ---- pure functions -----------------------------------------------------------------------------
def test_rouge1_recall_known_values():
    assert rouge1_recall("It is Blue Cardamom.", "blue cardamom") == 1.0
    assert rouge1_recall("blue pepper", "blue cardamom") == 0.5
    assert rouge1_recall("", "blue cardamom") == 0.0
    assert rouge1_recall("anchor anchor", "violet anchor anchor") == pytest.approx(2 / 3)
    with pytest.raises(PromptError, match="no words"):
        rouge1_recall("x", "  ... ")


def test_find_answer_span_exact_fuzzy_and_missing():
    prompt = [5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 8, 9]
    assert find_answer_span(prompt, [10, 11, 12]) == (3, 6)
    # 10 answer tokens, one differs in the prompt: overlap 0.9 is not > 0.9, so not found ...
    answer = list(range(10, 20))
    fuzzy = [5, 10, 11, 12, 13, 14, 99, 16, 17, 18, 19, 6]
    assert find_answer_span(fuzzy, answer) is None
    # ... but 20 answer tokens with one differing (0.95) is found, at the first matching window
    answer = list(range(100, 120))
    prompt = [1, 2, *range(100, 110), 7, *range(111, 120), 3]
    assert find_answer_span(prompt, answer) == (2, 22)
    assert find_answer_span([1, 2, 3], [4, 5]) is None


def test_copy_paste_events_on_hand_built_argmax():
    prompt = [0, 50, 51, 52, 60, 61]  # answer span [1, 4) holds tokens 50 51 52
    generated = [50, 51, 99, 52]
    # 2 layers x 2 heads; argmax key of the query producing each generated token
    argmax = torch.tensor([
        [[1, 0], [1, 4]],  # step 0 (token 50): L0H0 copies from 1 (event); L1H0 too; L1H1 points outside
        [[2, 2], [0, 5]],  # step 1 (token 51): L0H0 and L0H1 copy from 2
        [[3, 3], [3, 3]],  # step 2 (token 99): inside the span but the token differs: no event
        [[3, 1], [3, 3]],  # step 3 (token 52): L0H0, L1H0, L1H1 copy; L0H1 points at token 50: no event
    ])
    events = copy_paste_events(argmax, generated, prompt, (1, 4))
    assert events.tolist() == [[3, 1], [2, 1]]
    scores = events.float() / 3
    agg = aggregate(torch.stack([scores, torch.ones(2, 2)]), torch.stack([events, torch.ones(2, 2, dtype=torch.long)]),
                    torch.tensor([True, False]))
    torch.testing.assert_close(agg["score"], scores)  # the wrong trial is not counted
    assert agg["n_trials"] == 1 and agg["n_events"].tolist() == [[3, 1], [2, 1]]
    with pytest.raises(PromptError, match="No trial was answered correctly"):
        aggregate(scores[None], events[None], torch.tensor([False]))


def test_kv_bytes_and_ranking():
    import pandas as pd

    assert kv_bytes(1000, 2, 3, 4) == 2 * 4 * 4 * 6 * 1000
    # 6 KV heads, 2 full at 1000 tokens, 4 streaming with a 100-token window
    assert kv_bytes(1000, 2, 3, 4, n_full=2, sink=4, recent=96) == 2 * 4 * 4 * (2 * 1000 + 4 * 100)
    scores = pd.DataFrame({"layer": [0, 0, 0, 0], "head": [0, 1, 2, 3], "score": [0.0, 0.5, 0.2, 0.0],
                           "streaming_score": [0.9, 0.1, 0.2, 0.3]})
    ranking = kv_ranking(scores, n_kv_heads=2)  # heads 0,1 -> kv 0; 2,3 -> kv 1
    assert ranking[["layer", "kv_head"]].values.tolist() == [[0, 0], [0, 1]]
    assert ranking["score"].tolist() == [0.5, 0.2]


# ---- stream edits equal bridge edits ------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["tiny", "tiny_mha"])
def test_stream_uniform_equals_bridge_uniform(request, fixture):
    model = request.getfixturevalue(fixture)
    ids = _ids(model, "uniform attention through the stream, and through the bridge hooks")
    heads = parse_heads("L0H1,L1H2,L1H3")
    ref = model.run_with_hooks(ids, fwd_hooks=bridge_hooks(model, [UniformAttention(heads)]))
    with editing([UniformAttention(heads)], model):
        got = stream_forward(model, ids, None, logits="all").logits
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    assert (ref - model(ids)).abs().max() > 1e-2  # the edit does change the model


def _window_hook(heads, sink, recent):
    def hook(scores, hook=None):  # [B, H, Tq, Tk]
        t = scores.shape[-1]
        q = torch.arange(t)[:, None]
        k = torch.arange(t)[None, :]
        hidden = (k >= sink) & (k <= q - recent)
        scores = scores.clone()
        scores[:, heads] = scores[:, heads].masked_fill(hidden, torch.finfo(scores.dtype).min)
        return scores
    return hook


def test_stream_window_equals_masked_bridge_and_decoding(tiny, monkeypatch):
    from transformers import DynamicCache

    from workbench.engine import streaming

    monkeypatch.setattr(streaming, "ROWS_PER_BLOCK", 5)  # several row blocks, each with its own key band
    ids = _ids(tiny, "a streaming window keeps sink tokens and a recent band of keys")
    heads = [0, 3]
    edits = [StreamingWindow(parse_heads("L0H0,L0H3,L1H0,L1H3"), sink=2, recent=6),
             UniformAttention(parse_heads("L1H1"))]
    fwd = [(hooks.attn_scores(layer), _window_hook(heads, 2, 6)) for layer in (0, 1)]
    fwd += bridge_hooks(tiny, [UniformAttention(parse_heads("L1H1"))])
    ref = tiny.run_with_hooks(ids, fwd_hooks=fwd)
    with editing(edits, tiny):
        full = stream_forward(tiny, ids, None, logits="all").logits
        torch.testing.assert_close(full, ref, atol=1e-4, rtol=1e-4)
        cache = DynamicCache(config=model_info(tiny).hf_config)
        stream_forward(tiny, ids[:, :4], None, cache=cache)
        for step in range(4, ids.shape[1]):
            out = stream_forward(tiny, ids[:, step:step + 1], None, cache=cache, logits="last").logits
            torch.testing.assert_close(out[0, -1], ref[0, step], atol=1e-4, rtol=1e-4)


def test_stream_edits_bad_input(tiny):
    ids = _ids(tiny, "x y")
    with pytest.raises(InterventionError, match="do not exist"):
        with editing([UniformAttention(parse_heads("L5H0"))], tiny):
            pass
    with pytest.raises(InterventionError, match="edited twice"):
        with editing([UniformAttention(parse_heads("L0H0")), StreamingWindow(parse_heads("L0H0"))], tiny):
            pass
    with pytest.raises(InterventionError, match="recent >= 1"):
        with editing([StreamingWindow(parse_heads("L0H0"), sink=4, recent=0)], tiny):
            pass
    with editing([UniformAttention(parse_heads("L0H0"))], tiny):
        with pytest.raises(InterventionError, match="statistics"):
            stream_forward(tiny, ids, ReducerRequest())


# ---- scores through the reducers equal scores from full stored patterns --------------------------
def _scores_from_full_patterns(model, prompt_ids, generated, span):
    """Reference: one bridge forward over prompt + answer, full patterns, argmax of the producing rows."""
    info = model_info(model)
    seq = torch.tensor([list(prompt_ids) + list(generated[:-1])])
    names = [hooks.pattern(x) for x in range(info.n_layers)]
    _, cache = model.run_with_cache(seq, names_filter=lambda n: n in names)
    rows = torch.arange(len(prompt_ids) - 1, seq.shape[1])
    argmax = torch.stack([cache[hooks.pattern(x)][0][:, rows].argmax(-1) for x in range(info.n_layers)])  # [L,H,S]
    return argmax.permute(2, 0, 1), copy_paste_events(argmax.permute(2, 0, 1), generated, prompt_ids, span)


def _check_stream_vs_full(model, prompt_ids, span, max_new_tokens):
    gen = greedy_generate(model, prompt_ids, max_new_tokens=max_new_tokens, stats=True)
    ref_argmax, ref_events = _scores_from_full_patterns(model, prompt_ids, gen.tokens, span)
    assert (gen.argmax_pos == ref_argmax).float().mean() > 0.999  # ties aside, identical argmax keys
    events = copy_paste_events(gen.argmax_pos, gen.tokens, prompt_ids, span)
    assert torch.equal(events, ref_events)
    return events


def test_tiny_scores_through_reducers_equal_full_patterns(tiny):
    ids = _ids(tiny, "abcabcabcabc the key is xyzzy. abcabcabc what is the key? xyz")[0].tolist()
    # the whole prompt as the span, so copy events (repeated bytes) do occur on this random model
    events = _check_stream_vs_full(tiny, ids, (0, len(ids)), max_new_tokens=12)
    assert events.shape == (2, 4)


def test_auto_format_is_the_chat_template_where_there_is_one(tiny):
    from workbench.models.loading import model_info

    assert not getattr(model_info(tiny).tokenizer, "chat_template", None)
    auto = niah_prompts(tiny, lengths=(300,), depths=(50.0,), fmt="auto", max_new_tokens=8)
    paper = niah_prompts(tiny, lengths=(300,), depths=(50.0,), fmt="paper", max_new_tokens=8)
    assert auto.fingerprint == paper.fingerprint and auto.name.startswith("niah-paper")


def test_trials_with_lost_answers_are_skipped_and_counted(tiny, monkeypatch):
    ps = niah_prompts(tiny, lengths=(300,), depths=(50.0,), fmt="paper", max_new_tokens=8)
    meta = [dict(m) for m in ps.metadata]
    lost = PromptSet(name="lost", texts=(ps.texts[0],) * 2, metadata=(meta[0], {**meta[0], "answer": "zqxj vvkw"}))
    with pytest.raises(PromptError, match="No trial was answered correctly"):
        score_trials(tiny, lost, Params(max_new_tokens=4), progress=False)  # random model: never right
    from workbench.analyses.retrieval_heads import score as retrieval_heads

    monkeypatch.setattr(retrieval_heads, "rouge1_recall", lambda response, answer: 1.0)  # count every answer
    scores, trials = score_trials(tiny, lost, Params(max_new_tokens=4), progress=False, resume=False)
    assert trials["skipped"].tolist() == ["", "answer span not found in the tokenised prompt"]
    assert (scores["n_trials"] == 1).all()  # the skipped trial is reported, not scored as zero
    all_lost = PromptSet(name="all-lost", texts=ps.texts[:1], metadata=({**meta[0], "answer": "zqxj vvkw"},))
    with pytest.raises(PromptError, match="All 1 trials were skipped"):
        score_trials(tiny, all_lost, Params(max_new_tokens=4), progress=False)


def test_niah_bad_input(tiny):
    with pytest.raises(PromptError, match="exceed the context"):
        niah_prompts(tiny, lengths=(600,), fmt="paper")
    with pytest.raises(PromptError, match="must be a non-empty part"):
        Needle("x", "The code is 42.", "What is the code?", "43")
    with pytest.raises(PromptError, match="no room"):
        niah_prompts(tiny, lengths=(60,), fmt="paper")
    with pytest.raises(PromptError, match="Depths"):
        niah_prompts(tiny, lengths=(300,), depths=(150,), fmt="paper")


def test_niah_prompts_fit_and_hold_the_needle(tiny):
    ps = niah_prompts(tiny, lengths=(250, 400), depths=(0.0, 50.0, 100.0), fmt="paper", max_new_tokens=8)
    assert len(ps) == 2 * 3 * 3
    tok = model_info(tiny).tokenizer
    for text, meta in zip(ps.texts, ps.metadata, strict=True):
        assert meta["sentence"] in text and text.endswith("Answer:")
        assert len(tok(text, add_special_tokens=False)["input_ids"]) + 1 <= meta["context_length"]


# ---- SmolLM2 (short contexts) --------------------------------------------------------------------
@pytest.mark.real_model
def test_smollm2_scores_through_reducers_equal_full_patterns(smol):
    from workbench.analyses.retrieval_heads.score import locate_answer
    from workbench.core.prompts import tokenize

    ps = niah_prompts(smol, lengths=(300,), depths=(50.0,), fmt="chat", max_new_tokens=20)
    ids = tokenize(smol, ps)[0]
    span = locate_answer(model_info(smol).tokenizer, ids, ps.metadata[0]["answer"])
    assert span is not None
    events = _check_stream_vs_full(smol, ids, span, max_new_tokens=20)
    assert events.max() >= 1  # SmolLM2 does copy the answer from the needle


@pytest.mark.real_model
def test_smollm2_retrieval_heads_and_causal_check(smol):
    from workbench.analyses.retrieval_heads.checks import mask_check

    params = Params(lengths=(300,), n_depths=1, max_new_tokens=20)
    ps = niah_prompts(smol, lengths=(300,), depths=(50.0,), fmt="chat", max_new_tokens=20)
    assert niah_prompts(smol, lengths=(300,), depths=(50.0,), fmt="auto", max_new_tokens=20).fingerprint == \
        ps.fingerprint  # the default format is the chat template on an instruct model that has one
    scores, trials = score_trials(smol, ps, params, progress=False)
    assert trials["correct"].all() and scores["n_trials"].iloc[0] == 3
    assert 0 < scores["retrieval"].mean() < 0.3
    summary, _ = mask_check(smol, ps, scores, seeds=(0,), progress=False, max_new_tokens=20)
    top, rand = summary["accuracy"].tolist()
    assert top < rand  # masking the top retrieval heads hurts more than random heads


def test_cli_reports_a_clear_error_when_no_trial_is_right(tiny):
    from typer.testing import CliRunner

    from workbench.cli.main import app

    result = CliRunner().invoke(app, ["retrieval", "score", "-m", "tiny", "--fmt", "paper", "--lengths", "300",
                                      "--n-depths", "1", "--max-new-tokens", "4"])
    assert result.exit_code == 2, result.output
    assert "No trial was answered correctly" in result.output
    assert "0/3 trials already finished; finished trials are kept in" in result.output
    assert "estimated time for the other 2 trials" in result.output
    again = CliRunner().invoke(app, ["retrieval", "score", "-m", "tiny", "--fmt", "paper", "--lengths", "300",
                                     "--n-depths", "1", "--max-new-tokens", "4"])
    assert "3/3 trials already finished" in again.output and "estimated time" not in again.output
    result = CliRunner().invoke(app, ["retrieval", "score", "-m", "tiny", "--fmt", "paper", "--lengths", "9000"])
    assert result.exit_code == 2 and "exceed the context" in result.output
