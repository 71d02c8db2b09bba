"""Retrieval scoring at the paper's cost (statistics only for decoding queries) and runs that resume."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import torch

from workbench.analyses.retrieval_heads.prompts import niah_prompts
from workbench.analyses.retrieval_heads.score import (
    Params,
    _stream_keys,
    copy_paste_events,
    locate_answer,
    score_trials,
)
from workbench.analyses.retrieval_heads.trials import estimate_seconds, log_dir
from workbench.core.durations import format_duration
from workbench.core.prompts import tokenize
from workbench.engine import streaming
from workbench.engine.decode import greedy_generate
from workbench.engine.reducers import ReducerRequest
from workbench.engine.run import stream_forward
from workbench.models.loading import model_info

PARAMS = Params(lengths=(300,), n_depths=3, fmt="paper", max_new_tokens=5, only_correct=False)


@pytest.fixture(scope="module")
def trials(tiny):
    return niah_prompts(tiny, lengths=(300,), depths=(0.0, 50.0, 100.0), fmt="paper", max_new_tokens=5)


def _stats_during_prefill(model, ids, max_new_tokens, key_sets):
    """The costlier path: the whole prompt prefilled through the statistics path, its last row kept."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model_info(model).hf_config)
    request = ReducerRequest(row_argmax=True, column_sums=False, distance=False, key_sets=key_sets(len(ids) - 1))
    res = stream_forward(model, torch.tensor([ids]), request, cache=cache, logits="last")
    argmax, mass, out = [res.stats.argmax_pos[0, :, :, -1]], [res.stats.key_mass["stream"][0, :, :, -1]], []
    for step in range(max_new_tokens):
        out.append(int(res.logits[0, -1].argmax()))
        if step == max_new_tokens - 1:
            break
        request = ReducerRequest(row_argmax=True, column_sums=False, distance=False,
                                 key_sets=key_sets(len(ids) + step))
        res = stream_forward(model, torch.tensor([[out[-1]]]), request, cache=cache, logits="last")
        argmax.append(res.stats.argmax_pos[0, :, :, 0])
        mass.append(res.stats.key_mass["stream"][0, :, :, 0])
    return out, torch.stack(argmax), torch.stack(mass)


def test_statistics_only_for_decoding_queries(tiny, monkeypatch):
    rows = []
    blockwise = streaming._blockwise

    def spy(collector, acc, module, query, *args):
        rows.append(query.shape[2])
        return blockwise(collector, acc, module, query, *args)

    monkeypatch.setattr(streaming, "_blockwise", spy)
    gen = greedy_generate(tiny, list(range(1, 120)), max_new_tokens=6, stats=True, stop_at_newline=False)
    n_layers = model_info(tiny).n_layers
    assert len(gen.tokens) == 6 and gen.argmax_pos.shape == (6, n_layers, 4)
    assert rows == [1] * (6 * n_layers)  # one query per step and layer; the 118-token prefill ran plain SDPA


def test_decoding_statistics_equal_statistics_during_prefill(tiny, trials):
    key_sets = _stream_keys(PARAMS.sink_tokens, PARAMS.recent_tokens)
    tok = model_info(tiny).tokenizer
    for ids, meta in zip(tokenize(tiny, trials)[:3], trials.metadata[:3], strict=True):
        gen = greedy_generate(tiny, ids, max_new_tokens=8, stats=True, key_sets=key_sets, stop_at_newline=False)
        tokens, argmax, mass = _stats_during_prefill(tiny, ids, len(gen.tokens), key_sets)
        assert tokens == gen.tokens
        assert torch.equal(gen.argmax_pos, argmax)
        torch.testing.assert_close(gen.key_mass["stream"], mass, atol=1e-5, rtol=1e-5)
        span = locate_answer(tok, ids, meta["answer"]) or (0, len(ids))
        wide = (0, len(ids))  # the random model rarely copies from the needle; the whole prompt as a span
        for s in (span, wide):
            assert torch.equal(copy_paste_events(gen.argmax_pos, gen.tokens, ids, s),
                               copy_paste_events(argmax, tokens, ids, s))


class _Stop(Exception):
    pass


def _counting(monkeypatch):
    from workbench.engine import decode

    calls = []
    original = decode.greedy_generate

    def counted(model, prompt_ids, **kwargs):
        calls.append(len(prompt_ids))
        return original(model, prompt_ids, **kwargs)

    monkeypatch.setattr(decode, "greedy_generate", counted)
    return calls


def _stop_after(n):
    def on_trial(i, record, seconds):
        if i + 1 >= n:
            raise _Stop
    return on_trial


_TIMES = ["prefill_s", "decode_s"]


@pytest.fixture
def wide_spans(monkeypatch):
    """The whole prompt as the answer span: the random model copies repeated bytes, so events do occur."""
    from workbench.analyses.retrieval_heads import score as retrieval_heads

    monkeypatch.setattr(retrieval_heads, "locate_answer", lambda tok, ids, answer, overlap: (0, len(ids)))


def test_interrupted_run_resumes_without_redoing_trials(tiny, trials, monkeypatch, wide_spans, capsys):
    ref_scores, ref_trials = score_trials(tiny, trials, PARAMS, progress=False, resume=False)
    info = model_info(tiny)
    directory = log_dir(info.fingerprint, trials.fingerprint, PARAMS)
    assert not directory.exists()  # resume=False keeps nothing
    calls = _counting(monkeypatch)
    with pytest.raises(_Stop):
        score_trials(tiny, trials, PARAMS, progress=False, on_trial=_stop_after(4))
    assert len(calls) == 4 and len(list(directory.glob("trial-*.json"))) == 4
    capsys.readouterr()
    scores, table = score_trials(tiny, trials, PARAMS, progress=True)
    assert len(calls) == len(trials)  # the 4 finished trials were not redone
    said = capsys.readouterr().out
    assert f"4/9 trials already finished; finished trials are kept in {directory}" in said
    assert "estimated time for the 5 trials left" in said and "first trial took" not in said
    pd.testing.assert_frame_equal(scores, ref_scores)
    pd.testing.assert_frame_equal(table.drop(columns=_TIMES), ref_trials.drop(columns=_TIMES))
    assert ref_scores["n_events"].sum() > 0 and ref_scores["streaming_score"].gt(0).all()  # not all zeros
    # a finished run is all reused; threshold and only_correct only aggregate, so they reuse it too
    again, _ = score_trials(tiny, trials, Params(**{**PARAMS.__dict__, "threshold": 0.0}), progress=False)
    assert len(calls) == len(trials)
    assert again["retrieval"].sum() == (ref_scores["score"] > 0).sum()
    inputs = json.loads((directory / "inputs.json").read_text())
    assert inputs["prompts_fingerprint"] == trials.fingerprint and inputs["params"]["max_new_tokens"] == 5


def test_per_prompt_holds_the_counted_trials_behind_the_score(tiny, trials, monkeypatch, wide_spans):
    from workbench.analyses.retrieval_heads import score as retrieval_heads

    # only the "tortoise" needle's trials are answered right, so only they are counted
    monkeypatch.setattr(retrieval_heads, "rouge1_recall", lambda response, answer: float(answer == "Captain Biscuit"))
    result = retrieval_heads.run(tiny, trials, Params(**{**PARAMS.__dict__, "only_correct": True}), progress=False)
    counted = [i for i, m in enumerate(trials.metadata) if m["needle"] == "tortoise"]
    pp = result.per_prompt
    assert sorted(set(pp["prompt"])) == counted and set(pp["metric"]) == {"score", "n_events"}
    by_head = pp.groupby(["metric", "layer", "head"])["value"]
    scores = result.scores.set_index(["layer", "head"])
    mean, total = by_head.mean()["score"], by_head.sum()["n_events"]
    assert (scores["n_trials"] == len(counted)).all() and (total.loc[scores.index] == scores["n_events"]).all()
    # float32 means of 3 trial scores in [0, 1]
    assert (mean.loc[scores.index] - scores["score"]).abs().max() < 1e-6 and scores["score"].max() > 0
    assert result.tables["trials"]["correct"].tolist() == [m["needle"] == "tortoise" for m in trials.metadata]


def test_damaged_or_foreign_trial_files_are_redone(tiny, trials, monkeypatch, wide_spans, capsys):
    ref_scores, _ = score_trials(tiny, trials, PARAMS, progress=False)
    directory = log_dir(model_info(tiny).fingerprint, trials.fingerprint, PARAMS)
    (directory / "trial-00002.json").write_text('{"trial": 2, "row": {"n_tok')  # cut short
    record = json.loads((directory / "trial-00005.json").read_text())
    (directory / "trial-00005.json").write_text(json.dumps({**record, "events": record["events"][:1]}))
    (directory / ".trial-00006.json.tmp-999999999").write_text("left by a killed writer")
    calls = _counting(monkeypatch)
    scores, _ = score_trials(tiny, trials, PARAMS, progress=False)
    assert len(calls) == 2
    pd.testing.assert_frame_equal(scores, ref_scores)
    other = Params(**{**PARAMS.__dict__, "max_new_tokens": 3})  # other trial inputs: a separate log
    capsys.readouterr()
    score_trials(tiny, trials, other, progress=True)
    assert len(calls) == 2 + len(trials)
    said = capsys.readouterr().out  # estimated before starting, from the trials of the first log
    assert "0/9 trials already finished" in said
    assert re.search(r"left: ~\d+ s \(from an earlier run of this model\)", said)
    assert log_dir(model_info(tiny).fingerprint, trials.fingerprint, other) != directory


def test_estimate_from_the_first_trial():
    first = {"row": {"n_tokens": 500, "prefill_s": 2.0, "decode_s": 3.0}}
    assert estimate_seconds(first, [500, 2000]) == pytest.approx((2 + 3) + (8 + 3))
    assert format_duration(42) == "42 s" and format_duration(605) == "10 min 5 s"
    assert format_duration(7260) == "2 h 1 min" and format_duration(-3) == "0 s"


_KILLED_CHILD = """
import os, signal, sys
from workbench.analyses.retrieval_heads.score import Params, score_trials
from workbench.models.loading import load_model
from workbench.analyses.retrieval_heads.prompts import niah_prompts

tiny = load_model("tiny")
trials = niah_prompts(tiny, lengths=(300,), depths=(0.0, 50.0, 100.0), fmt="paper", max_new_tokens=5)
params = Params(lengths=(300,), n_depths=3, fmt="paper", max_new_tokens=5, only_correct=False)

def on_trial(i, record, seconds):
    if i + 1 >= int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: a hard kill

score_trials(tiny, trials, params, progress=False, on_trial=on_trial)
"""


def test_run_killed_in_a_subprocess_resumes(tiny, trials, monkeypatch, tmp_path):
    import os
    import subprocess
    import sys

    ref_scores, _ = score_trials(tiny, trials, PARAMS, progress=False, resume=False)
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_CHILD)
    proc = subprocess.run([sys.executable, str(script), "3"], env=dict(os.environ), capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    directory = log_dir(model_info(tiny).fingerprint, trials.fingerprint, PARAMS)
    assert sorted(p.name for p in directory.glob("trial-*.json")) == [f"trial-0000{i}.json" for i in range(3)]
    calls = _counting(monkeypatch)
    scores, _ = score_trials(tiny, trials, PARAMS, progress=False)
    assert len(calls) == len(trials) - 3
    pd.testing.assert_frame_equal(scores, ref_scores)
