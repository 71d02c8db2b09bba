"""Retrieval heads across lengths (the long preset's finding) and `--preset` on the generated CLI."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from test_cli import cli, cli_error, table_rows

from workbench.analyses.base import per_prompt_table
from workbench.analyses.retrieval_heads import LONG_LENGTHS, SPEC
from workbench.analyses.retrieval_heads.lengths import length_summary, length_tables, top_k_count
from workbench.core.errors import WorkbenchError

LAYERS, HEADS = 4, 10  # 40 heads: 5 % is 2


def _synthetic():
    """Trials 0–3 at 100 tokens, 4–7 at 300; trial 2 wrong and trial 6 skipped. Per-trial scores are seeded."""
    rng = np.random.default_rng(0)
    values = rng.random((8, LAYERS, HEADS)) * (rng.random((8, LAYERS, HEADS)) < 0.5)  # many zeros: ties
    values[:4, 3, 9] = values[4:, 0, 0] = 1.0  # the best head at each length
    trials = pd.DataFrame({"trial": range(8), "context_length": [100] * 4 + [300] * 4,
                           "skipped": [""] * 6 + ["answer span not found", ""],
                           "correct": [True, True, False, True, True, True, None, False]})
    counted = [0, 1, 3, 4, 5]  # correct and decoded (only_correct=True)
    return values, trials, per_prompt_table({"score": values[counted], "n_events": values[counted] * 3}, counted)


def test_length_tables_on_a_synthetic_per_prompt_frame():
    values, trials, per_prompt = _synthetic()
    short, long = values[[0, 1, 3]].mean(0).reshape(-1), values[[4, 5]].mean(0).reshape(-1)
    tables = length_tables(per_prompt, trials, threshold=0.3)

    lengths = tables["lengths"].set_index("context_length")
    assert lengths["trials"].tolist() == [4, 4] and lengths["decoded"].tolist() == [4, 3]
    assert lengths["counted"].tolist() == [3, 2]
    assert lengths["accuracy"].tolist() == pytest.approx([3 / 4, 2 / 3])
    assert lengths["retrieval_heads"].tolist() == [(short > 0.3).sum(), (long > 0.3).sum()]
    assert lengths["max_score"].tolist() == pytest.approx([1.0, 1.0])

    pairs = tables["length_pairs"]
    assert pairs[["length_a", "length_b", "heads"]].values.tolist() == [[100, 300, LAYERS * HEADS]]
    assert pairs["spearman"].iloc[0] == pytest.approx(spearmanr(short, long).statistic, abs=1e-12)
    assert 0 < len(set(short)) < len(short)  # ties were present, and ranked by their average

    labels = [f"L{layer}H{head}" for layer in range(LAYERS) for head in range(HEADS)]

    def top(x, k):  # best first, ties in (layer, head) order
        return [labels[i] for i in sorted(range(len(x)), key=lambda i: (-x[i], i))[:k]]

    overlap = tables["top_overlap"].set_index("k")
    assert overlap["n"].tolist() == [10, top_k_count(LAYERS * HEADS)] == [10, 2]
    for name, k in (("top 10", 10), ("top 5 %", 2)):
        shared = [h for h in top(long, k) if h in top(short, k)]
        assert overlap.loc[name, "overlap"] == len(shared) / k
        assert overlap.loc[name, "shared"].split() == shared
        assert overlap.loc[name, "only_300"].split() == [h for h in top(long, k) if h not in shared]
    assert tables["top_by_length"]["100"].iloc[0] == "L3H9 1.000" and tables["top_by_length"]["300"].iloc[0] == \
        "L0H0 1.000"
    assert tables["top_by_length"]["300"].str.split().str[0].tolist() == top(long, 10)

    summary = length_summary(tables)
    assert summary["accuracy_by_length"] == {"100": 0.75, "300": pytest.approx(2 / 3)}
    assert summary["spearman_by_pair"]["100~300"] == pytest.approx(pairs["spearman"].iloc[0])
    assert summary["top10_overlap_300_vs_100"] == overlap.loc["top 10", "overlap"]
    assert summary["top5pct_overlap_300_vs_100"] == overlap.loc["top 5 %", "overlap"]


def test_one_length_has_no_pairs():
    _, trials, per_prompt = _synthetic()
    short = trials[trials["context_length"] == 100]
    tables = length_tables(per_prompt[per_prompt["prompt"].isin(short["trial"])], short, threshold=0.3)
    assert set(tables) == {"lengths", "top_by_length"} and "spearman_by_pair" not in length_summary(tables)


def test_presets_resolve_and_explicit_values_win():
    params = SPEC.make_params(preset="long")
    assert params.lengths == LONG_LENGTHS == (2048, 4096, 8168) and params.n_depths == 3
    assert len(params.lengths) * params.n_depths * 3 == 27  # 3 needles
    mixed = SPEC.make_params({"n_depths": "2", "max_new_tokens": 8}, preset="long")
    assert (mixed.lengths, mixed.n_depths, mixed.max_new_tokens) == (LONG_LENGTHS, 2, 8)
    assert SPEC.make_params({}) == SPEC.params_type()  # no preset: the defaults
    with pytest.raises(WorkbenchError, match=r"retrieval_heads has no preset 'lnog'; its presets: long\."):
        SPEC.make_params(preset="lnog")


def test_preset_on_the_command_line(tiny):
    assert "--preset" in cli("retrieval", "score", "--help").stdout
    assert "--preset" not in cli("induction", "score", "--help").stdout  # only specs that have presets
    assert "has no preset 'lnog'; its presets: long." in cli_error("retrieval", "score", "-m", "tiny", "--preset",
                                                                    "lnog")
    # the long preset's lengths exceed the tiny model's context; explicit --lengths override them
    assert "exceed the context" in cli_error("retrieval", "score", "-m", "tiny", "--preset", "long", "--no-save")
    ran = cli("retrieval", "score", "-m", "tiny", "--preset", "long", "--lengths", "300,400", "--fmt", "paper",
              "--max-new-tokens", "4", "--only-correct", "false", "--no-save")
    out, bar = ran.stdout, ran.stderr.split("\r")[-1]  # one bar: counts, rate and the length-aware ETA
    assert re.search(r"retrieval scoring: 100%\|.*\| 18/18 trials \[[\d:]+,\s+[\d.]+(trial/s|s/trial), ETA ~0 s\]",
                     bar), bar
    assert "0/18 trials already finished" in out  # 2 lengths × 3 depths × 3 needles
    rows = {r[0]: r for r in table_rows(out) if r and r[0] in ("300", "400")}
    assert set(rows) == {"300", "400"} and "length_pairs" in out and "top_overlap" in out
    assert "spearman_by_pair={'300~400':" in out
