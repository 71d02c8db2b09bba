"""`workbench sinks report|edit`: attention sinks, massive activations, sink interventions (`sinks search`: the
generic act_search check, added in workbench/cli/main.py)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import typer

from workbench import api
from workbench.cli.common import DEVICE, DTYPE, MODEL, console, friendly, save_figures, show
from workbench.cli.registry import RESULTS_DIR
from workbench.core.errors import WorkbenchError
from workbench.core.heads import parse_heads
from workbench.core.natural_text import text_chunks
from workbench.core.validation import parse_int_list
from workbench.edits.kinds import SinkCalibration

sinks_app = typer.Typer(help="Attention sinks: BOS/hidden/secondary sinks, massive activations, ACT.",
                        no_args_is_help=True)


@sinks_app.command("report")
@friendly(out_dirs=("out",))
def report(model: str = MODEL,
           device: str = DEVICE, dtype: str = DTYPE,
           n_prompts: int = typer.Option(16, help="natural-text prompts"),
           n_tokens: int = typer.Option(64, help="tokens per prompt (paper: 64); up to the context"),
           epsilon: float = typer.Option(0.3, help="sink threshold on α[0]"),
           ppl_prompts: int = typer.Option(4, help="held-out text windows for the perplexity edit (0: skip)"),
           ppl_tokens: int = typer.Option(128),
           top: int = typer.Option(10, help="rows per table"),
           out: Optional[Path] = typer.Option(None, help="directory for HTML figures"),
           save: bool = typer.Option(True, help="save the report to the results catalog (kind 'report')"),
           results_dir: Optional[Path] = RESULTS_DIR):
    """Where the BOS sink holds, hidden and secondary sinks, massive activations and their edit."""
    from workbench.analyses.attention_sinks.report import ReportParams, massive_perplexity, sink_report

    started = time.perf_counter()
    bridge = api.load_model(model, device=device, dtype=dtype)
    params = ReportParams(n_prompts=n_prompts, n_tokens=n_tokens, epsilon=epsilon)
    prompts = text_chunks(bridge, n_prompts, n_tokens)
    rep = sink_report(bridge, prompts, params)
    heads, layers = rep["heads"], rep["layers"]
    console.rule(f"BOS sink · {model} · {n_prompts} prompts × {n_tokens} tokens · ε = {epsilon}")
    console.print(f"sink rate (share of prompt × layer × head with α[0] > ε): "
                  f"[bold]{float(heads['sink_rate'].mean()):.1%}[/] of {len(heads)} heads; "
                  f"heads with a sink on every prompt: {int((heads['sink_rate'] == 1).sum())}, "
                  f"on none: {int((heads['sink_rate'] == 0).sum())}")
    show(layers, "per layer: share of heads with α0 > ε, mean α0, BOS vs median token norm, max/median |h|", 100)
    show(heads.sort_values("first_token_share", ascending=False)[
        ["label", "sink_rate", "first_token_share", "hidden_sink_rate", "n_hidden_sinks", "max_hidden_alpha"]],
        "heads with the strongest first-token share", top)
    hidden = rep["hidden_examples"]
    console.rule("hidden sinks (α > 0.1, not the first sink)")
    if hidden.empty:
        console.print("none found")
    else:
        console.print(f"{len(hidden)} (prompt, head, key) hidden sinks in {hidden['head'].nunique()} heads; "
                      f"heads with a hidden sink on some prompt: {int((heads['hidden_sink_rate'] > 0).sum())}")
        counts = hidden.groupby("token").agg(n=("alpha", "size"), mean_alpha=("alpha", "mean"),
                                             heads=("head", "nunique")).sort_values("n", ascending=False)
        show(counts.reset_index(), "hidden-sink tokens", top)
        show(hidden.sort_values("alpha", ascending=False), "strongest hidden sinks", top)
    sec = rep["secondary"]
    console.rule("secondary sinks (|cos to BOS| > 0.9 in the BOS-norm layer range; 4 < lifetime < L − 15)")
    found = sec[sec["class"] == "secondary"]
    console.print(f"{len(found)} secondary sinks over {n_prompts} prompts; tokens with any flagged layer: {len(sec)}")
    if not sec.empty:
        show(sec.sort_values("lifetime", ascending=False), "tokens aligned with BOS (by lifetime)", top)
    console.rule("massive activations (|h| ≥ 100 × median |h| of the layer)")
    dims = rep["massive_dims"]
    if dims.empty:
        console.print("none found")
    else:
        show(dims.drop(columns=["token_means_first_layer"]), "massive dimensions", top)
    if ppl_prompts and not dims.empty:
        texts = text_chunks(bridge, ppl_prompts, ppl_tokens, offset=n_prompts * n_tokens, name="pydoc-heldout")
        rep["perplexity"] = massive_perplexity(bridge, dims, texts)
        show(rep["perplexity"], f"perplexity on {ppl_prompts} held-out windows of "
             f"{ppl_tokens} tokens: massive dims set to zero vs to their mean")
    if save:
        record = _save_report(bridge, prompts, params, rep, time.perf_counter() - started, results_dir).record
        console.print(f"saved report {record.run_id} (`workbench results show {record.run_id}`; the app lists it)")
    from workbench.analyses.attention_sinks.views import first_token_heatmap, layer_norm_curves, token_heatmap

    if out is not None:
        save_figures({"first_token_share": first_token_heatmap(heads), "layer_norms": layer_norm_curves(layers),
                      "cos_to_bos": token_heatmap(rep["tokens"])}, out)


def _save_report(model, prompts, params, rep: dict, seconds: float, results_dir):
    """The report as a Result of kind "report": HeadScores as a run's (score = sink rate), every table, a summary."""
    from workbench.analyses.base import Result
    from workbench.analyses.runner import save_result
    from workbench.models.loading import model_info

    heads = rep["heads"]
    scores = heads.assign(analysis="attention_sinks", model=model_info(model).spec.name, prompt_set=prompts.name,
                          score=heads["sink_rate"])
    summary = {"sink_rate": float(heads["sink_rate"].mean()), "heads_always": int((heads["sink_rate"] == 1).sum()),
               "heads_never": int((heads["sink_rate"] == 0).sum()), "hidden_sinks": len(rep["hidden_examples"]),
               "secondary_sinks": int((rep["secondary"]["class"] == "secondary").sum()),
               "massive_dims": len(rep["massive_dims"])}
    tables = {name: table for name, table in rep.items() if name != "heads"}
    return save_result("attention_sinks", Result("attention_sinks", scores, tables, summary, kind="report"), model,
                       prompts, params, seconds=seconds, results_dir=results_dir)


@sinks_app.command("edit")
@friendly
def edit(kind: str = typer.Option(..., help="gamma | remove | act | massive-zero | massive-mean"),
         heads: str = typer.Option("", help="heads like 'L3H5,L10H2' (gamma, remove, act)"),
         gamma: float = typer.Option(0.5, help="initial-token scale γ (gamma)"),
         keys: str = typer.Option("0", help="sink key positions (remove)"),
         beta: float = typer.Option(0.4, help="ACT β (act)"),
         model: str = MODEL,
         device: str = DEVICE, dtype: str = DTYPE,
         n_prompts: int = typer.Option(4), n_tokens: int = typer.Option(128)):
    """One sink intervention on held-out natural text; loss before and after (perplexity in the summary)."""
    from workbench.analyses.attention_sinks.score import prompt_alphas

    kinds = ("gamma", "remove", "act", "massive-zero", "massive-mean")
    if kind not in kinds:
        raise WorkbenchError(f"Unknown --kind {kind!r}; choose gamma, remove, act, massive-zero or massive-mean.")
    refs = parse_heads(heads) if heads else ()
    if kind in ("gamma", "remove", "act") and not refs:
        raise WorkbenchError(f"--kind {kind} needs --heads, e.g. --heads L3H5,L10H2.")
    if kind == "remove":
        parse_int_list(keys, "--keys")  # malformed keys fail before the model loads
    bridge = api.load_model(model, device=device, dtype=dtype)
    texts = text_chunks(bridge, n_prompts, n_tokens, offset=4096, name="pydoc-edit")
    if kind == "gamma":
        edits = [api.AttentionEdit(refs, (0,), logit_bias=math.log(gamma))]
    elif kind == "remove":
        edits = [api.AttentionEdit(refs, parse_int_list(keys, "--keys"), scale=0.0)]
    elif kind == "act":
        from workbench.analyses.attention_sinks.act_search import SearchParams, sink_keys

        per_prompt = sink_keys(prompt_alphas(bridge, texts, progress=False), SearchParams(beta=beta))
        edits = [SinkCalibration(tuple((h.layer, h.head) for h in refs), tuple(per_prompt), beta)]
    else:  # massive-zero, massive-mean
        from workbench.analyses.attention_sinks.report import ReportParams, massive_edits, sink_report

        calib = text_chunks(bridge, 8, 64)
        dims = sink_report(bridge, calib, ReportParams(n_prompts=8), progress=False)["massive_dims"]
        if dims.empty:
            raise WorkbenchError("No massive activations found on this model; nothing to edit.")
        edits = massive_edits(dims, kind.split("-")[1])
    table = api.intervene(bridge, texts, edits, "loss")
    show(table[["prompt", "before", "after", "delta"]], f"{kind}: loss per prompt")
    console.print(f"perplexity {math.exp(table['before'].mean()):.3f} → {math.exp(table['after'].mean()):.3f}")
