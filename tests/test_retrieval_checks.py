"""The retrieval checks "mask" and "kv_budget" as registered CheckSpecs, on the tiny model, against hand-written
hooks and the KV-memory formula."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from workbench.analyses import get_analysis
from workbench.analyses.base import resolve
from workbench.analyses.retrieval_heads.score import default_prompts
from workbench.core.prompts import tokenize
from workbench.engine import hooks
from workbench.models.loading import model_info

TRIALS = {"lengths": "300", "n_depths": "1", "fmt": "paper", "max_new_tokens": "3", "seeds": "2"}


def _scores(model, best: dict[tuple[int, int], float]) -> pd.DataFrame:
    """Hand-made retrieval HeadScores: `best` heads get their score (and are retrieval heads if > 0.1)."""
    info = model_info(model)
    rows = [{"layer": lay, "head": h, "score": best.get((lay, h), 0.0), "n_events": 0,
             "streaming_score": 0.5} for lay in range(info.n_layers) for h in range(info.n_heads)]
    df = pd.DataFrame(rows)
    return df.assign(retrieval=df["score"] > 0.1, label=[f"L{r.layer}H{r.head}" for r in df.itertuples()])


def _uniform_greedy(model, ids: list[int], heads, n: int) -> list[int]:
    """Greedy tokens with `heads` attending uniformly to their visible keys: every score set to 0 on a bridge
    hook (entries already masked stay masked), the whole sequence re-run at each step."""
    def uniform(scores, hook=None, layer=0):
        scores = scores.clone()
        for lay, h in heads:
            if lay == layer:
                s = scores[:, h]
                scores[:, h] = torch.where(s > torch.finfo(s.dtype).min / 2, torch.zeros_like(s), s)
        return scores
    fwd = [(hooks.attn_scores(x), lambda s, hook=None, x=x: uniform(s, layer=x)) for x in {lay for lay, _ in heads}]
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(model.run_with_hooks(torch.tensor([out]), fwd_hooks=fwd)[0, -1].argmax()))
    return out[len(ids):]


def test_mask_check_masks_the_top_heads_like_a_hand_written_hook(tiny):
    check = get_analysis("retrieval_heads").check("mask")
    params = check.make_params({**TRIALS, "k": "2"})
    scores = _scores(tiny, {(1, 2): 0.9, (0, 3): 0.5, (1, 0): 0.2})  # L1H0 is a retrieval head outside the top 2
    result = resolve(check.run)(tiny, params, scores=scores, progress=False)
    assert result.kind == "mask" and result.scores is None and result.analysis == "retrieval_heads"
    conditions, trials = result.tables["conditions"], result.tables["trials"]
    assert conditions["heads"].tolist()[0] == "L1H2,L0H3" and conditions["seed"].tolist()[1:] == [0, 1]
    for heads in conditions["heads"][1:]:  # random sets: non-retrieval heads outside the top k
        assert len(heads.split(",")) == 2 and not {"L1H2", "L0H3", "L1H0"} & set(heads.split(","))
    prompts = default_prompts(tiny, params)
    assert result.summary["n_trials"] == len(prompts) == 3 and len(trials) == 3 * 3
    assert result.summary["accuracy"] == trials.loc[trials["condition"] == conditions["condition"][0], "correct"].mean()
    tok = model_info(tiny).tokenizer
    top = trials[trials["condition"] == "top-k retrieval masked"]
    changed = 0
    for ids, response in zip(tokenize(tiny, prompts), top["response"], strict=True):
        masked = _uniform_greedy(tiny, ids, [(1, 2), (0, 3)], 3)
        assert tok.decode(masked).strip().startswith(response) and response  # decoding may stop at a newline
        changed += masked != _uniform_greedy(tiny, ids, [], 3)
    assert changed  # the mask does change what the model says


def test_kv_budget_check_keeps_the_best_kv_heads_and_saves_what_the_formula_says(tiny):
    info = model_info(tiny)  # 2 layers × 2 KV heads (2 query heads each)
    check = get_analysis("retrieval_heads").check("kv_budget")
    params = check.make_params({**TRIALS, "full_share": "0.5", "sink": "4", "recent": "16"})
    scores = _scores(tiny, {(1, 3): 0.9, (0, 0): 0.4})  # → KV heads (1, 1) and (0, 0) keep the full cache
    result = resolve(check.run)(tiny, params, scores=scores, progress=False)
    s, conditions, trials = result.summary, result.tables["conditions"], result.tables["trials"]
    assert result.kind == "kv_budget" and (s["n_full_kv"], s["n_kv_total"]) == (2, info.n_layers * info.n_kv_heads)
    assert conditions["full KV heads (L, kv)"][0] == "L0H0,L1H1" and len(conditions) == 3
    t = trials.loc[trials["condition"] == "retrieval KV heads full", "n_tokens"].astype(float)
    full = 2 * info.n_layers * info.n_kv_heads * t * info.d_head * 4
    budget = 2 * info.d_head * 4 * (2 * t + 2 * t.clip(upper=4 + 16))
    assert s["kv_saving"] == pytest.approx(1 - budget.mean() / full.mean(), rel=1e-12)
    assert s["kv_saving"] == pytest.approx(0.5 * (1 - 20 / t.mean()), rel=0.01) and math.isfinite(s["accuracy"])
    assert s["accuracy_random"] == conditions["accuracy"][1:].tolist()
