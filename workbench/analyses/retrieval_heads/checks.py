"""What retrieval heads are for: NIAH accuracy when they are masked, and a DuoAttention-style KV budget.

- `mask_check` (Wu et al. 2024): masking = `UniformAttention`; "top-k" masks the k best heads, "random" k heads
  drawn per seed from the non-retrieval heads outside the top k; accuracy = share of trials with ROUGE-1 > 0.5.
- `budget_check` (DuoAttention, Xiao et al. 2024): KV heads ranked by their query heads' best score (GQA); the
  top `full_share` keep the full cache, the others become streaming heads (`StreamingWindow`), vs the same
  number of full KV heads at random, per seed. KV bytes (float32): full = 2·L·H_kv·T·d·4, budget =
  2·d·4·(n_full·T + n_stream·min(T, sink+recent)), T = prompt + generated; saving = 1 − budget / full.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

import pandas as pd
from tqdm.auto import tqdm

from workbench.analyses.base import Result
from workbench.analyses.retrieval_heads import score  # module attributes: tests patch rouge1_recall
from workbench.analyses.retrieval_heads.lengths import top_k_count
from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef
from workbench.core.prompts import tokenize
from workbench.edits.apply import editing
from workbench.edits.kinds import StreamingWindow, UniformAttention
from workbench.engine import decode
from workbench.models.loading import model_info


def niah_accuracy(model, prompts, edits: Sequence = (), *, max_new_tokens: int = 24, progress: bool = True,
                  desc: str = "niah") -> pd.DataFrame:
    """One row per trial: response, ROUGE-1 recall, correct, tokens, under stream `edits`."""
    ids = tokenize(model, prompts)
    rows = []
    with editing(list(edits), model):
        for i in tqdm(range(len(ids)), desc=desc, unit="trial", disable=not progress):
            meta = prompts.metadata[i]
            gen = decode.greedy_generate(model, ids[i], max_new_tokens=max_new_tokens)
            rouge = score.rouge1_recall(gen.text, meta["answer"])
            rows.append({"trial": i, "needle": meta.get("needle"), "context_length": meta.get("context_length"),
                         "depth": meta.get("depth"), "n_tokens": len(ids[i]) + len(gen.tokens),
                         "response": gen.text.strip(), "rouge1_recall": rouge, "correct": rouge > 0.5})
    return pd.DataFrame(rows)


def _heads(df: pd.DataFrame) -> list[HeadRef]:
    return [HeadRef(int(r.layer), int(r.head)) for r in df.itertuples(index=False)]


def _short(heads: Sequence[HeadRef], limit: int = 6) -> str:
    text = ",".join(str(h) for h in heads[:limit])
    return text + (f",… ({len(heads)})" if len(heads) > limit else "")


def mask_check(model, prompts, scores: pd.DataFrame, *, k: int | None = None, seeds: Sequence[int] = (0, 1, 2),
               max_new_tokens: int = 24, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary: condition, seed, k, heads, accuracy, n_trials; per-trial table) for top-k vs random masking."""
    ranked = scores.sort_values(["score", "n_events"], ascending=False)
    k = k or top_k_count(len(scores))
    if not 1 <= k < len(scores):
        raise WorkbenchError(f"k must be between 1 and {len(scores) - 1}; got {k}.")
    top = _heads(ranked.head(k))
    pool = _heads(ranked.iloc[k:][~ranked.iloc[k:]["retrieval"].astype(bool)])
    if len(pool) < k:
        raise WorkbenchError(f"Only {len(pool)} non-retrieval heads remain outside the top {k}; lower k.")
    conditions = [("top-k retrieval masked", None, top)]
    for seed in seeds:
        conditions.append(("random non-retrieval masked", seed, sorted(random.Random(seed).sample(pool, k))))
    return _run_conditions(model, prompts, [(c, s, h, [UniformAttention(tuple(h))]) for c, s, h in conditions],
                           max_new_tokens, progress, k=k)


def kv_bytes(n_tokens: int, n_layers: int, n_kv: int, d_head: int, n_full: int | None = None,
             sink: int = 0, recent: int = 0, dtype_bytes: int = 4) -> int:
    """K+V cache bytes at `n_tokens` with `n_full` full KV heads and the rest streaming (None: all full)."""
    total = n_layers * n_kv
    n_full = total if n_full is None else n_full
    per_token = 2 * d_head * dtype_bytes
    return per_token * (n_full * n_tokens + (total - n_full) * min(n_tokens, sink + recent))


def kv_ranking(scores: pd.DataFrame, n_kv_heads: int) -> pd.DataFrame:
    """KV heads (layer, kv_head) ranked by the best retrieval score of their query heads."""
    group = int(scores["head"].max() + 1) // n_kv_heads
    df = scores.assign(kv_head=scores["head"] // group)
    agg = df.groupby(["layer", "kv_head"], as_index=False).agg(score=("score", "max"),
                                                               streaming_score=("streaming_score", "min"))
    return agg.sort_values(["score", "streaming_score"], ascending=[False, True]).reset_index(drop=True)


def budget_check(model, prompts, scores: pd.DataFrame, *, full_share: float = 0.25, sink: int = 4,
                 recent: int = 128, seeds: Sequence[int] = (0, 1, 2), max_new_tokens: int = 24,
                 progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary with accuracy and KV memory saving per condition; per-trial table)."""
    info = model_info(model)
    if not 0 <= full_share < 1:
        raise WorkbenchError(f"full_share is the share of KV heads kept full, in [0, 1); got {full_share}.")
    group = info.n_heads // info.n_kv_heads
    ranking = kv_ranking(scores, info.n_kv_heads)
    n_full = int(math.ceil(full_share * len(ranking))) if full_share > 0 else 0
    kv_all = [(int(r.layer), int(r.kv_head)) for r in ranking.itertuples(index=False)]
    conditions = [("retrieval KV heads full", None, kv_all[:n_full])]
    for seed in seeds:
        conditions.append(("random KV heads full", seed, random.Random(seed).sample(kv_all, n_full)))
    runs = []
    for name, seed, full in conditions:
        keep = set(full)
        streaming = tuple(HeadRef(layer, h) for layer in range(info.n_layers) for h in range(info.n_heads)
                          if (layer, h // group) not in keep)
        shown = [HeadRef(layer, g) for layer, g in sorted(full)]
        edits = [StreamingWindow(streaming, sink, recent)] if streaming else []
        runs.append((name, seed, shown, edits))
    summary, trials = _run_conditions(model, prompts, runs, max_new_tokens, progress, k=n_full)
    summary = summary.rename(columns={"heads": "full KV heads (L, kv)", "k": "n_full_kv"})
    full_b = trials.apply(lambda r: kv_bytes(r.n_tokens, info.n_layers, info.n_kv_heads, info.d_head), axis=1)
    budget_b = trials.apply(lambda r: kv_bytes(r.n_tokens, info.n_layers, info.n_kv_heads, info.d_head, n_full,
                                               sink, recent), axis=1)
    trials = trials.assign(kv_full_mb=full_b / 2**20, kv_budget_mb=budget_b / 2**20)
    saving = 1 - trials.groupby("condition")["kv_budget_mb"].mean() / trials.groupby("condition")["kv_full_mb"].mean()
    summary["kv_saving"] = summary["condition"].map(saving)
    summary["kv_full_mb"] = summary["condition"].map(trials.groupby("condition")["kv_full_mb"].mean())
    summary["kv_budget_mb"] = summary["condition"].map(trials.groupby("condition")["kv_budget_mb"].mean())
    summary.attrs.update({"n_full_kv": n_full, "n_kv_total": len(ranking), "sink": sink, "recent": recent})
    return summary, trials


def _run_conditions(model, prompts, runs, max_new_tokens, progress, k) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, tables = [], []
    for name, seed, heads, edits in runs:
        label = name if seed is None else f"{name} (seed {seed})"
        table = niah_accuracy(model, prompts, edits, max_new_tokens=max_new_tokens, progress=progress, desc=label)
        tables.append(table.assign(condition=name, seed=seed))
        rows.append({"condition": name, "seed": seed, "k": k, "heads": _short(list(heads)),
                     "accuracy": float(table["correct"].mean()), "n_trials": len(table)})
    summary, trials = pd.DataFrame(rows), pd.concat(tables, ignore_index=True)
    for table in (summary, trials):  # no seed for the top-k condition: a nullable integer column, not floats
        table["seed"] = table["seed"].astype("Int64")
    return summary, trials


def _headline(conditions: pd.DataFrame) -> dict:
    """Accuracy of the first (chosen-heads) condition and of each random seed, from a conditions table."""
    chosen, rand = conditions.iloc[0], conditions.iloc[1:]
    return {"condition": chosen["condition"], "accuracy": float(chosen["accuracy"]),
            "accuracy_random": [float(x) for x in rand["accuracy"]],
            "accuracy_random_mean": float(rand["accuracy"].mean()) if len(rand) else None,
            "n_trials": int(chosen["n_trials"])}


def run_mask(model, params, *, scores: pd.DataFrame, progress: bool = True) -> Result:
    """The "mask" check (MaskParams): tables "conditions" and "trials"; summary: k, top-k and random accuracies."""
    conditions, trials = mask_check(model, score.default_prompts(model, params), scores, k=params.k or None,
                                    seeds=range(params.seeds), max_new_tokens=params.max_new_tokens,
                                    progress=progress)
    summary = {"k": int(conditions["k"].iloc[0]), **_headline(conditions)}
    return Result("retrieval_heads", tables={"conditions": conditions, "trials": trials}, summary=summary,
                  kind="mask")


def run_kv_budget(model, params, *, scores: pd.DataFrame, progress: bool = True) -> Result:
    """The "kv_budget" check (BudgetParams): tables "conditions" and "trials"; summary: KV heads, saving, accuracies."""
    conditions, trials = budget_check(model, score.default_prompts(model, params), scores, full_share=params.full_share,
                                      sink=params.sink, recent=params.recent, seeds=range(params.seeds),
                                      max_new_tokens=params.max_new_tokens, progress=progress)
    summary = {**conditions.attrs, "kv_saving": float(conditions["kv_saving"].iloc[0]), **_headline(conditions)}
    return Result("retrieval_heads", tables={"conditions": conditions, "trials": trials}, summary=summary,
                  kind="kv_budget")
