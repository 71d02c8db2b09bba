"""ablate_top: if the top-k first-token heads matter, mean-ablating them should change the next-token loss on
natural text more than mean-ablating k random other heads (n_random draws, seeded 0 … n_random − 1). Table
`conditions`: one row per condition with the mean over prompts of loss before, after and delta = after − before."""

from __future__ import annotations

import random

import pandas as pd

from first_token_attention import AblateTopParams
from workbench.analyses.base import Result


def ablate_top(model, params: AblateTopParams, *, scores: pd.DataFrame, progress: bool = True) -> Result:
    from workbench.core.heads import HeadRef
    from workbench.core.natural_text import text_chunks
    from workbench.edits.intervene import AblateHead, intervene

    ranked = scores.sort_values(["score", "layer", "head"], ascending=[False, True, True])
    top = [HeadRef(int(r.layer), int(r.head)) for r in ranked.head(params.k).itertuples()]
    others = sorted({HeadRef(int(r.layer), int(r.head)) for r in scores.itertuples()} - set(top))
    conditions = [("top", None, top)] + [("random", s, random.Random(s).sample(others, params.k))
                                         for s in range(params.n_random)]
    prompts = text_chunks(model, params.n_prompts, params.n_tokens)
    rows = []
    for name, seed, heads in conditions:
        table = intervene(model, prompts, AblateHead(tuple(heads), "mean"), "loss")
        rows.append({"condition": name, "seed": seed, "label": name if seed is None else f"{name} {seed}",
                     "heads": ",".join(map(str, heads)),
                     **{c: float(table[c].mean()) for c in ("before", "after", "delta")}})
    table = pd.DataFrame(rows)
    summary = {"top_delta": rows[0]["delta"], "random_delta": float(table["delta"][1:].mean())}
    return Result("first_token_attention", None, {"conditions": table}, summary, kind="ablate_top")
