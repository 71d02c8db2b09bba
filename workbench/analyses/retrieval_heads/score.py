"""Retrieval heads (Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context Factuality").

Needle-in-a-haystack trials are decoded greedily; at step t the query producing y_t is reduced to its argmax
key `i* = argmax_k A[l,h][q_t, k]`. Copy-paste event: `a ≤ i* < b` and `prompt_ids[i*] == y_t`, where
`[a, b)` is the answer span (first window whose token set overlaps the answer's by > 0.9, `find_answer_span`).
Trial score = #events / |span|; a trial counts if ROUGE-1 recall of the response vs the answer > 0.5.
`score` = mean over counted trials, in [0, 1]; retrieval head: score > 0.1 (paper: 3–6 % of heads).
`streaming_score` = mean decoding-query attention mass on the first `sink_tokens` plus last `recent_tokens`
keys (DuoAttention's streaming-head pattern). Departures from the official code: ROUGE-1 without stemming;
the answer also matched with a leading space (BPE); a newline stops decoding only after non-blank text;
trials without an answer span are skipped and counted; `only_correct=False` counts every trial.
As in the official code the prompt is prefilled with plain SDPA; only decoding queries go through the
statistics path (`engine.decode`). Finished trials are saved at once (`trials.py`), so a run resumes.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.analyses.base import Result, head_frame, per_prompt_table
from workbench.analyses.retrieval_heads import Params
from workbench.analyses.retrieval_heads.lengths import length_summary, length_tables
from workbench.analyses.retrieval_heads.prompts import niah_prompts
from workbench.analyses.retrieval_heads.trials import TrialLog, earlier_trial, estimate_seconds
from workbench.core.durations import format_duration
from workbench.core.errors import PromptError
from workbench.core.prompts import tokenize
from workbench.models.loading import model_info

_WORD = re.compile(r"[a-z0-9]+")
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} trials [{elapsed}, {rate_fmt}{postfix}]"


def rouge1_recall(response: str, reference: str) -> float:
    """Clipped unigram overlap / reference unigrams (lower-cased alphanumeric words), in [0, 1]."""
    ref = Counter(_WORD.findall(reference.lower()))
    if not ref:
        raise PromptError(f"The reference answer {reference!r} has no words to score against.")
    got = Counter(_WORD.findall(response.lower()))
    return sum(min(n, got[w]) for w, n in ref.items()) / sum(ref.values())


def find_answer_span(prompt_ids: Sequence[int], answer_ids: Sequence[int],
                     overlap: float = 0.9) -> tuple[int, int] | None:
    """First window `[i, i+len(answer))` whose token set overlaps the answer's set by > `overlap`."""
    want = set(int(t) for t in answer_ids)
    if not want:
        raise PromptError("The answer has no tokens.")
    n = len(answer_ids)
    for i in range(0, len(prompt_ids) - n + 1):
        if len(want & set(int(t) for t in prompt_ids[i: i + n])) / len(want) > overlap:
            return i, i + n
    return None


def locate_answer(tokenizer, prompt_ids: Sequence[int], answer: str, overlap: float = 0.9) -> tuple[int, int] | None:
    """`find_answer_span` for the answer tokenised as written, then with a leading space."""
    for text in (answer, " " + answer):
        span = find_answer_span(prompt_ids, tokenizer(text, add_special_tokens=False)["input_ids"], overlap)
        if span is not None:
            return span
    return None


def copy_paste_events(argmax_pos: torch.Tensor, generated: Sequence[int], prompt_ids: Sequence[int],
                      span: tuple[int, int]) -> torch.Tensor:
    """Event counts `[L, H]` from `argmax_pos[S, L, H]` (argmax key of the query producing `generated[s]`)."""
    a, b = span
    prompt = torch.as_tensor(list(prompt_ids), dtype=torch.long)
    gen = torch.as_tensor(list(generated), dtype=torch.long)[: argmax_pos.shape[0]]
    pos = argmax_pos[: len(gen)].long()
    inside = (pos >= a) & (pos < b)
    copied = prompt[pos.clamp(0, len(prompt) - 1)] == gen[:, None, None]
    return (inside & copied & (pos < len(prompt))).sum(0)


def aggregate(trial_scores: torch.Tensor, trial_events: torch.Tensor, correct: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean score `[L, H]` over correct trials of `trial_scores[N, L, H]`; event totals; counted trials."""
    keep = correct.bool()
    n = int(keep.sum())
    if n == 0:
        raise PromptError("No trial was answered correctly, so retrieval scores are undefined (the paper counts "
                          "correct trials only); use shorter contexts or the chat format.")
    return {"score": trial_scores[keep].mean(0), "n_events": trial_events[keep].sum(0), "n_trials": n}


def _stream_keys(sink: int, recent: int):
    def key_sets(pos: int) -> dict[str, list[int]]:
        return {"stream": [*range(min(sink, pos + 1)), *range(max(sink, pos - recent + 1), pos + 1)]}
    return key_sets


def score_trials(model, prompts, params: Params, *, progress: bool = True, resume: bool = True,
                 on_trial: Callable[[int, dict, float], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(HeadScores, trials table) for a NIAH prompt set; with `resume`, finished trials are saved and reused.
    `on_trial(i, record, seconds)` follows each computed trial; scores aggregate all records in trial order.
    """
    info, records = _trial_records(model, prompts, params, progress=progress, resume=resume, on_trial=on_trial)
    return _aggregate_records(records, info, prompts, params)[:2]


def _trial_records(model, prompts, params: Params, *, progress: bool, resume: bool = True,
                   on_trial: Callable[[int, dict, float], None] | None = None) -> tuple:
    """(model info, one trial record per prompt): loaded from the trial log, or decoded now and saved."""
    info = model_info(model)
    ids = tokenize(model, prompts)
    shape = (info.n_layers, info.n_heads)
    log = TrialLog.for_run(info, prompts, params) if resume else None
    records: list[dict | None] = [None] * len(ids)
    for i, record in (log.load([len(x) for x in ids], shape) if log else {}).items():
        records[i] = record
    todo = [i for i in range(len(ids)) if records[i] is None]
    say = tqdm.write if progress else (lambda text: None)
    if log is not None:
        say(f"{len(ids) - len(todo)}/{len(ids)} trials already finished; finished trials are kept in "
            f"{log.directory} (a rerun with the same inputs resumes there)")
    timed = [r for r in records if r is not None and r["events"] is not None]
    basis = (max(timed, key=lambda r: r["row"]["n_tokens"]), "a finished trial") if timed else (
        (earlier_trial(info.fingerprint), "an earlier run of this model") if log is not None and todo else (None, ""))
    estimated = bool(todo and basis[0])  # before starting, from a trial on disk; else after the first trial
    if estimated:
        left = estimate_seconds(basis[0], [len(ids[j]) for j in todo])
        say(f"estimated time for the {len(todo)} trials left: ~{format_duration(left)} (from {basis[1]})")
    with tqdm(total=len(ids), initial=len(ids) - len(todo), desc="retrieval scoring", unit="trial",
              bar_format=_BAR, disable=not progress) as bar:
        for n_done, i in enumerate(todo):
            start = time.perf_counter()
            record = _score_trial(model, info, i, ids[i], prompts.metadata[i], params)
            if log is not None:
                log.save(record)
            records[i] = record
            rest = todo[n_done + 1:]
            if record["events"] is not None:  # the ETA from the latest trial, scaled to each trial's length
                bar.set_postfix_str(f"ETA ~{format_duration(estimate_seconds(record, [len(ids[j]) for j in rest]))}",
                                    refresh=False)
            bar.update(1)
            if not estimated and rest and record["events"] is not None:  # the first trial that was decoded
                estimated = True
                left = estimate_seconds(record, [len(ids[j]) for j in rest])
                say(f"first trial took {time.perf_counter() - start:.1f} s ({len(ids[i])} tokens); estimated time "
                    f"for the other {len(rest)} trials: ~{format_duration(left)}")
            if on_trial is not None:
                on_trial(i, record, time.perf_counter() - start)
    return info, records


def _score_trial(model, info, i: int, prompt_ids: list[int], meta, params: Params) -> dict:
    """One trial as a JSON-ready record: table row, span, events `[L, H]`, streaming-mass sum `[L, H]`."""
    from workbench.engine.decode import greedy_generate

    row = {"trial": i, "needle": meta.get("needle"), "context_length": meta.get("context_length"),
           "depth": meta.get("depth"), "n_tokens": len(prompt_ids), "skipped": ""}
    span = locate_answer(info.tokenizer, prompt_ids, meta["answer"], params.span_overlap)
    if span is None:
        row["skipped"] = "answer span not found in the tokenised prompt"
        return {"trial": i, "row": row, "span": None, "events": None, "stream_sum": None, "stream_n": 0}
    gen = greedy_generate(model, prompt_ids, max_new_tokens=params.max_new_tokens, stats=True,
                          key_sets=_stream_keys(params.sink_tokens, params.recent_tokens))
    ev = copy_paste_events(gen.argmax_pos, gen.tokens, prompt_ids, span)
    rouge = rouge1_recall(gen.text, meta["answer"])
    stream = gen.key_mass["stream"]
    row.update({"span": f"{span[0]}:{span[1]}", "response": gen.text.strip(), "rouge1_recall": rouge,
                "correct": rouge > 0.5, "prefill_s": gen.prefill_s, "decode_s": gen.decode_s})
    return {"trial": i, "row": row, "span": list(span), "events": ev.tolist(),
            "stream_sum": stream.sum(0).float().tolist(), "stream_n": int(stream.shape[0])}


def _aggregate_records(records: Sequence[dict], info, prompts, params: Params) -> tuple:
    """(HeadScores, trials table, per_prompt): each counted trial's "score" and "n_events" per head (mean / sum)."""
    shape = (info.n_layers, info.n_heads)
    scores, events, correct, scored = [], [], [], []
    stream_sum, stream_n = torch.zeros(shape), 0
    for record in records:
        if record["events"] is None:
            continue
        ev = torch.tensor(record["events"], dtype=torch.long)
        a, b = record["span"]
        scores.append(ev.float() / (b - a))
        events.append(ev)
        correct.append(bool(record["row"]["correct"]))
        scored.append(int(record["trial"]))
        stream_sum += torch.tensor(record["stream_sum"], dtype=torch.float32)
        stream_n += int(record["stream_n"])
    trials = pd.DataFrame([record["row"] for record in records])
    if not scores:
        raise PromptError(f"All {len(records)} trials were skipped: the answer span was not found in any tokenised "
                          "prompt; check the needles (the answer must survive tokenisation).")
    counted = torch.tensor(correct) if params.only_correct else torch.ones(len(correct), dtype=torch.bool)
    agg = aggregate(torch.stack(scores), torch.stack(events), counted)
    streaming = stream_sum / max(stream_n, 1)
    df = head_frame("retrieval_heads", info, prompts.name, lambda layer, head: {
        "score": float(agg["score"][layer, head]), "n_trials": agg["n_trials"],
        "n_events": int(agg["n_events"][layer, head]), "retrieval": float(agg["score"][layer, head]) > params.threshold,
        "streaming_score": float(streaming[layer, head])})
    keep = counted.nonzero().flatten().tolist()
    per_prompt = per_prompt_table({"score": torch.stack(scores)[keep], "n_events": torch.stack(events)[keep]},
                                  [scored[i] for i in keep])
    return df, trials, per_prompt


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    """HeadScores, table "trials", a summary, and per_prompt (see `_aggregate_records`; `prompt` = trial id)."""
    info, records = _trial_records(model, prompts, params, progress=progress)
    scores, trials, per_prompt = _aggregate_records(records, info, prompts, params)
    scores.attrs["trials"] = trials.to_dict("records")
    done = trials[trials["skipped"] == ""]
    summary = {"n_trials": len(trials), "n_skipped": len(trials) - len(done),
               "share_retrieval_heads": float(scores["retrieval"].mean()),
               "top_heads": scores.sort_values("score", ascending=False)["label"].head(10).tolist()}
    if "correct" in done and len(done):
        summary["accuracy"] = float(done["correct"].astype(bool).mean())
    lengths_known = "correct" in done and trials["context_length"].notna().all()  # NIAH sets: per-length tables
    by_length = length_tables(per_prompt, trials, params.threshold) if lengths_known else {}
    summary.update(length_summary(by_length) if by_length else {})
    return Result("retrieval_heads", scores, {"trials": trials, **by_length}, summary, per_prompt)


def depths(n: int) -> tuple[float, ...]:
    if n < 1:
        raise PromptError(f"Need at least one depth; got n_depths={n}.")
    return tuple(float(x) for x in torch.linspace(0, 100, n).tolist()) if n > 1 else (50.0,)


def default_prompts(model, params):
    """NIAH trials of `params` (Params, MaskParams or BudgetParams: lengths × depths × needles)."""
    return niah_prompts(model, tuple(params.lengths), depths(params.n_depths), fmt=params.fmt,
                        max_new_tokens=params.max_new_tokens)
