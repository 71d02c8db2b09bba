"""First-token attention per head, from streaming statistics (no T×T pattern is kept).

Per head (l, h) and prompt p, `a_p = mean_{t≥1} A_p[t, 0]`: the share of attention query t puts on the first
token, averaged over the queries that can look elsewhere (t ≥ 1). score = `mean_p a_p`, in [0, 1] (higher: more
of an attention sink; uniform attention gives ≈ mean_t 1/(t+1)). per_prompt holds every a_p (metric
"first_token"), so an interval over prompts needs no model.
"""

from __future__ import annotations

import pandas as pd

from first_token_attention import Params
from workbench.analyses.base import Result
from workbench.engine.reducers import ReducerRequest


def default_prompts(model, params: Params):
    from workbench.core.natural_text import text_chunks

    return text_chunks(model, params.n_prompts, params.n_tokens)


def run(model, prompts, params: Params, *, progress: bool = True) -> Result:
    from workbench.engine.store import ActivationStore
    from workbench.models.loading import model_info

    info = model_info(model)
    request = ReducerRequest(row_argmax=False, column_sums=False, distance=False, key_sets={"first": [0]})
    stats, _ = ActivationStore().ensure_stats(model, prompts, request, progress=progress)
    rows = [{"prompt": p, "layer": layer, "head": head, "metric": "first_token",
             "value": float(s.key_mass["first"][0, layer, head, 1:].mean())}
            for p, s in enumerate(stats) for layer in range(info.n_layers) for head in range(info.n_heads)]
    per_prompt = pd.DataFrame(rows)
    scores = per_prompt.groupby(["layer", "head"], as_index=False)["value"].mean().rename(columns={"value": "score"})
    scores.insert(0, "prompt_set", prompts.name)
    scores.insert(0, "model", info.spec.name)
    scores.insert(0, "analysis", "first_token_attention")
    return Result("first_token_attention", scores, summary={"max_score": float(scores["score"].max())},
                  per_prompt=per_prompt)
