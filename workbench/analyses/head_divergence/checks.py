"""VHR-style reinforcement (He et al. 2024): scale the top-k divergence heads' outputs by α, vs k random heads.

Follow rate (held-out counterfactual prompts) = share with logit(passage answer) > logit(true answer);
neutral preference (neutral passages) = share with logit(true) > logit(counterfactual).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.analyses.base import Result
from workbench.analyses.head_divergence import ReinforceParams
from workbench.analyses.head_divergence.prompts import known_facts, load_facts, prompt_set, split
from workbench.core.errors import WorkbenchError
from workbench.core.heads import HeadRef
from workbench.core.prompts import PromptSet
from workbench.core.validation import check_number
from workbench.edits.intervene import ScaleHead, intervene


def reinforce(model, scores: pd.DataFrame, *, k: int = 10, alpha: float = 2.0, n_random: int = 3, seed: int = 0,
              held_out: float = 0.5, prompts=None) -> pd.DataFrame:
    """One row per condition (baseline, top-k, random-k per seed): follow rate and neutral preference.
    `prompts`: a counterfactual set (facts in `extra["facts"]`) instead of the held-out known facts."""
    for name, value, kind in (("k", k, int), ("alpha", alpha, float), ("n_random", n_random, int),
                              ("seed", seed, int), ("held_out", held_out, float)):
        check_number(name, value, kind)  # before the facts are scored, not after
    facts, neutral = load_facts()
    if prompts is None:
        kept, _ = known_facts(model, facts)
        _, test = split(kept, held_out, seed)
        if not test:
            raise WorkbenchError("No held-out facts: lower held_out or add facts the model knows.")
        counterfactual = prompt_set(test, "counterfactual", f"counterfactual-qa-heldout-{len(test)}")
        neutral_set = prompt_set(test, "neutral", f"neutral-qa-heldout-{len(test)}", neutral)
    else:
        counterfactual, neutral_set = prompts, _neutral_twin(prompts, neutral)
    ranked = scores.sort_values("score", ascending=False)
    top = tuple(HeadRef(int(r.layer), int(r.head)) for r in ranked.head(k).itertuples())
    rest = [HeadRef(int(r.layer), int(r.head)) for r in ranked.iloc[k:].itertuples()]
    rng = np.random.default_rng(seed)
    conditions = [("top-k", top)] + [(f"random-{s}", tuple(rest[i] for i in rng.choice(len(rest), k, replace=False)))
                                     for s in range(n_random)]
    rows = []
    for name, heads in conditions:
        cf = intervene(model, counterfactual, ScaleHead(heads, alpha), "logit_diff")
        nt = intervene(model, neutral_set, ScaleHead(heads, alpha), "logit_diff")
        if not rows:
            rows.append({"condition": "baseline", "heads": "", "follow_rate": float((cf["before"] > 0).mean()),
                         "mean_follow_margin": float(cf["before"].mean()),
                         "neutral_true_preferred": float((nt["before"] > 0).mean()), "n": len(cf)})
        rows.append({"condition": name, "heads": ",".join(map(str, heads)),
                     "follow_rate": float((cf["after"] > 0).mean()),
                     "mean_follow_margin": float(cf["after"].mean()),
                     "neutral_true_preferred": float((nt["after"] > 0).mean()), "n": len(cf)})
    return pd.DataFrame(rows)


def _neutral_twin(counterfactual, neutral: list[str]):
    """The neutral-passage prompts of a counterfactual set's facts; answer ids (if the set carries them) swapped,
    since there the true answer is the one that should win."""
    facts = dict(counterfactual.extra).get("facts")
    if not facts:
        raise WorkbenchError(f"Prompt set {counterfactual.name!r} carries no facts (extra['facts']); build it with "
                             "workbench.analyses.head_divergence.prompts.")
    base = prompt_set(facts, "neutral", f"{counterfactual.name}-neutral", neutral)
    swap = {"answer_id": "wrong_id", "wrong_id": "answer_id"}
    meta = tuple({**n, **{swap[key]: value for key, value in m.items() if key in swap}}
                 for n, m in zip(base.metadata, counterfactual.metadata, strict=True))
    return PromptSet(name=base.name, texts=base.texts, metadata=meta, description=base.description)


def run_reinforce(model, params: ReinforceParams, *, scores: pd.DataFrame, progress: bool = True,
                  prompts=None) -> Result:
    """The check: `reinforce` with its params; summary = follow rates and neutral preference per condition."""
    table = reinforce(model, scores, k=params.k, alpha=params.alpha, n_random=params.n_random, seed=params.seed,
                      held_out=params.held_out, prompts=prompts)
    random_rows = table[table["condition"].str.startswith("random")]
    summary = {"heads": table.loc[table["condition"] == "top-k", "heads"].iloc[0].split(","), "alpha": params.alpha,
               "n_prompts": int(table["n"].iloc[0])}
    for name, rows in (("baseline", table[table["condition"] == "baseline"]),
                       ("top_k", table[table["condition"] == "top-k"]), ("random", random_rows)):
        summary[f"{name}_follow_rate"] = float(rows["follow_rate"].mean())
        summary[f"{name}_neutral_true_preferred"] = float(rows["neutral_true_preferred"].mean())
    return Result("head_divergence", None, {"reinforce": table}, summary, kind="reinforce")
