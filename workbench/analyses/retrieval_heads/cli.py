"""`workbench retrieval score|mask|budget|all`: retrieval heads on needle-in-a-haystack, and what they do."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import typer

from workbench.analyses.retrieval_heads import BudgetParams, MaskParams, Trials
from workbench.cli.common import DEVICE, DTYPE, console, friendly, save_figure, show
from workbench.cli.common import MODEL as _MODEL
from workbench.core.errors import WorkbenchError

retrieval_app = typer.Typer(help="Retrieval heads (Wu et al. 2024): scores, causal check, KV budget.",
                            no_args_is_help=True)

_LENGTHS = typer.Option(None, help="prompt lengths in tokens, e.g. '500,1000,2000' (default: the preset's)")
_PRESET = typer.Option("default", help="default (500,2000 tokens) | long (2048,4096,8168: full 8192 context)")
_DEPTHS = typer.Option(5, "--depths", help="number of needle depths, linspace(0, 100)")
_FMT = typer.Option("chat", "--format", help="chat (chat template) | paper (the paper's plain prompt)")
_NEW = typer.Option(24, help="max new tokens per answer")
_RUN = typer.Option(None, "--scores", help="reuse the scores of a saved retrieval_heads run id")
_OUT = typer.Option(None, "--out", help="directory for HTML figures and CSV tables")
_SEEDS = typer.Option(3, help="random-head seeds")


def _prompts(model, lengths, preset, depths, fmt, new):
    """(Params, prompts): `--lengths` parsed here, at the edge; the preset's lengths without it."""
    from workbench.analyses.retrieval_heads.prompts import DEFAULT_LENGTHS, LONG_LENGTHS
    from workbench.analyses.retrieval_heads.score import Params, default_prompts
    from workbench.core.validation import parse_int_list

    presets = {"default": DEFAULT_LENGTHS, "long": LONG_LENGTHS}
    if preset not in presets:
        raise WorkbenchError(f"Unknown preset {preset!r}; choose default or long.")
    lengths = parse_int_list(lengths, "--lengths", lo=1) if lengths else presets[preset]
    params = Params(lengths=lengths, n_depths=depths, fmt=fmt, max_new_tokens=new)
    return params, default_prompts(model, params)


def _trials(params) -> dict:
    """The NIAH trial fields of `params`, for a check's Params."""
    return {f.name: getattr(params, f.name) for f in dataclasses.fields(Trials)}


def _scores(bridge, prompts, params, run_id, out):
    from workbench import api

    if run_id:
        scores, record = api.load_result(run_id)
        if record.analysis != "retrieval_heads":
            raise WorkbenchError(f"Run {run_id} is a {record.analysis} run, not retrieval_heads.")
        console.print(f"reusing retrieval scores of run {run_id} ({record.prompt_set})")
        return scores, None
    start = time.perf_counter()
    scores, trials, record = api.retrieval_scores(bridge, prompts, params)
    _report_scores(scores, trials, time.perf_counter() - start, record, out)
    return scores, trials


def _report_scores(scores, trials, seconds, record, out) -> None:
    done = trials[trials["skipped"] == ""]
    skipped = trials[trials["skipped"] != ""]
    console.print(f"[bold]baseline NIAH accuracy[/]: {done['correct'].mean():.3f} ({int(done['correct'].sum())}/"
                  f"{len(done)} trials correct; {len(skipped)} skipped{_reasons(skipped)}) in {seconds:.0f} s")
    by_len = done.groupby("context_length")["correct"].agg(["mean", "count"]).reset_index()
    show(by_len.rename(columns={"mean": "accuracy", "count": "trials"}), "baseline accuracy by context length")
    n_ret = int(scores["retrieval"].sum())
    console.print(f"[bold]retrieval heads[/] (score > 0.1): {n_ret}/{len(scores)} = {n_ret / len(scores):.1%} of heads "
                  f"(paper: 3–6 %); scores averaged over {int(scores['n_trials'].iloc[0])} correct trials")
    top = scores.sort_values(["score", "n_events"], ascending=False).head(10)
    show(top[["label", "score", "n_events", "n_trials", "retrieval", "streaming_score"]], "top 10 retrieval heads")
    corr = scores["score"].corr(scores["streaming_score"], method="spearman")
    console.print(f"streaming score: mean {scores['streaming_score'].mean():.3f} over all heads, "
                  f"{scores.loc[scores['retrieval'], 'streaming_score'].mean():.3f} over retrieval heads; "
                  f"Spearman(retrieval, streaming) = {corr:.3f}")
    if record:
        console.print(f"saved run [bold]{record.run_id}[/] (reuse with --scores {record.run_id})")
    if out:
        from workbench.analyses.retrieval_heads import views as viz

        _write(out, "scores_heatmap.html", viz.score_heatmap(scores))
        _write(out, "retrieval_vs_streaming.html", viz.retrieval_vs_streaming(scores))
        trials.to_csv(Path(out) / "score_trials.csv", index=False)


def _reasons(skipped) -> str:
    if skipped.empty:
        return ""
    return ": " + "; ".join(f"{n}× {r}" for r, n in skipped["skipped"].value_counts().items())


def _write(out, name, fig) -> None:
    console.print(f"wrote {save_figure(fig, Path(out) / name)}")


def _baseline(trials) -> float | None:
    if trials is None:
        return None
    done = trials[trials["skipped"] == ""]
    return float(done["correct"].mean())


def _mask(bridge, params, scores, baseline, out) -> None:
    from workbench.analyses.retrieval_heads.checks import random_mean, run_mask

    start = time.perf_counter()
    result = run_mask(bridge, params, scores=scores)
    summary, trials = result.tables["conditions"], result.tables["trials"]
    if baseline is not None:
        console.print(f"baseline (no heads masked): {baseline:.3f}")
    show(summary, f"causal check: uniform attention on k={int(summary['k'].iloc[0])} heads "
                  f"({int(summary['k'].iloc[0]) / len(scores):.1%} of heads)")
    show(random_mean(summary), "accuracy per condition (random: mean ± sd over seeds)")
    console.print(f"mask check took {time.perf_counter() - start:.0f} s")
    if out:
        from workbench.analyses.retrieval_heads import views as viz

        _write(out, "mask_check.html", viz.condition_bars(summary, "NIAH accuracy: top-k vs random heads masked",
                                                          baseline))
        _write(out, "mask_by_length.html", viz.accuracy_by_length(trials, "masked heads: accuracy by length"))
        trials.to_csv(Path(out) / "mask_trials.csv", index=False)


def _budget(bridge, params, scores, baseline, out) -> None:
    from workbench.analyses.retrieval_heads.checks import random_mean, run_kv_budget

    start = time.perf_counter()
    result = run_kv_budget(bridge, params, scores=scores)
    summary, trials, a = result.tables["conditions"], result.tables["trials"], result.summary
    if baseline is not None:
        console.print(f"baseline (full KV cache everywhere): {baseline:.3f}")
    show(summary, f"KV budget: {a['n_full_kv']}/{a['n_kv_total']} KV heads full, others sink {a['sink']} + "
                  f"recent {a['recent']}")
    show(random_mean(summary), "accuracy and KV saving per condition (random: mean ± sd over seeds)")
    by_len = trials.groupby(["condition", "context_length"], as_index=False).agg(
        accuracy=("correct", "mean"), kv_full_mb=("kv_full_mb", "mean"), kv_budget_mb=("kv_budget_mb", "mean"))
    show(by_len, "budget by context length (KV cache MB, float32)")
    console.print(f"budget check took {time.perf_counter() - start:.0f} s")
    if out:
        from workbench.analyses.retrieval_heads import views as viz

        _write(out, "budget_check.html", viz.condition_bars(summary, "NIAH accuracy under a KV budget", baseline))
        _write(out, "budget_by_length.html", viz.accuracy_by_length(trials, "KV budget: accuracy by length"))
        trials.to_csv(Path(out) / "budget_trials.csv", index=False)


@retrieval_app.command("score")
@friendly(out_dirs=("out",))
def score(model: str = _MODEL, lengths: Optional[str] = _LENGTHS, preset: str = _PRESET, depths: int = _DEPTHS,
          device: str = DEVICE, dtype: str = DTYPE,
          fmt: str = _FMT, max_new_tokens: int = _NEW, out: Optional[Path] = _OUT):
    """Retrieval score per head on NIAH trials; baseline accuracy, share above 0.1, top 10 heads."""
    from workbench import api

    bridge = api.load_model(model, device=device, dtype=dtype)
    params, prompts = _prompts(bridge, lengths, preset, depths, fmt, max_new_tokens)
    console.print(f"{len(prompts)} NIAH trials ({','.join(map(str, params.lengths))} tokens × {depths} depths × "
                  f"needles, {fmt} format)")
    _scores(bridge, prompts, params, None, out)


@retrieval_app.command("mask")
@friendly(out_dirs=("out",))
def mask(model: str = _MODEL, lengths: Optional[str] = _LENGTHS, preset: str = _PRESET, depths: int = _DEPTHS,
         device: str = DEVICE, dtype: str = DTYPE,
         fmt: str = _FMT, max_new_tokens: int = _NEW, scores_run: Optional[str] = _RUN,
         k: Optional[int] = typer.Option(None, help="heads to mask (default 5 % of heads)"), seeds: int = _SEEDS,
         out: Optional[Path] = _OUT):
    """Causal check: NIAH accuracy with the top-k retrieval heads vs k random non-retrieval heads uniform."""
    from workbench import api

    bridge = api.load_model(model, device=device, dtype=dtype)
    params, prompts = _prompts(bridge, lengths, preset, depths, fmt, max_new_tokens)
    scores, trials = _scores(bridge, prompts, params, scores_run, out)
    _mask(bridge, MaskParams(**_trials(params), k=k or 0, seeds=seeds), scores, _baseline(trials), out)


@retrieval_app.command("budget")
@friendly(out_dirs=("out",))
def budget(model: str = _MODEL, lengths: Optional[str] = _LENGTHS, preset: str = _PRESET, depths: int = _DEPTHS,
           device: str = DEVICE, dtype: str = DTYPE,
           fmt: str = _FMT, max_new_tokens: int = _NEW, scores_run: Optional[str] = _RUN,
           full_share: float = typer.Option(0.25, help="share of KV heads that keep the full cache"),
           sink: int = typer.Option(4, help="sink tokens of a streaming head"),
           recent: int = typer.Option(128, help="recent tokens of a streaming head"), seeds: int = _SEEDS,
           out: Optional[Path] = _OUT):
    """DuoAttention-style budget: retrieval KV heads full, the rest streaming; vs random KV heads."""
    from workbench import api

    bridge = api.load_model(model, device=device, dtype=dtype)
    params, prompts = _prompts(bridge, lengths, preset, depths, fmt, max_new_tokens)
    scores, trials = _scores(bridge, prompts, params, scores_run, out)
    _budget(bridge, BudgetParams(**_trials(params), full_share=full_share, sink=sink, recent=recent, seeds=seeds),
            scores, _baseline(trials), out)


@retrieval_app.command("all")
@friendly(out_dirs=("out",))
def run_all(model: str = _MODEL, lengths: Optional[str] = _LENGTHS, preset: str = _PRESET, depths: int = _DEPTHS,
            device: str = DEVICE, dtype: str = DTYPE,
            fmt: str = _FMT, max_new_tokens: int = _NEW, scores_run: Optional[str] = _RUN,
            k: Optional[int] = typer.Option(None), seeds: int = _SEEDS, full_share: float = typer.Option(0.25),
            sink: int = typer.Option(4), recent: int = typer.Option(128), out: Optional[Path] = _OUT):
    """score, then mask, then budget on the same trials (one scoring pass)."""
    from workbench import api

    bridge = api.load_model(model, device=device, dtype=dtype)
    params, prompts = _prompts(bridge, lengths, preset, depths, fmt, max_new_tokens)
    console.print(f"{len(prompts)} NIAH trials ({','.join(map(str, params.lengths))} tokens × {depths} depths × "
                  f"needles, {fmt} format)")
    scores, trials = _scores(bridge, prompts, params, scores_run, out)
    _mask(bridge, MaskParams(**_trials(params), k=k or 0, seeds=seeds), scores, _baseline(trials), out)
    _budget(bridge, BudgetParams(**_trials(params), full_share=full_share, sink=sink, recent=recent, seeds=seeds),
            scores, _baseline(trials), out)
