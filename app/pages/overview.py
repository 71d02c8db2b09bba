"""Overview: the model, the prompt sets and analyses, the runs in the catalog, and running an analysis."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
from dash import dcc, html

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app.context import AppContext
from workbench_app.pages.common import card, field, job_slots, page, table

RUN_COLUMNS = ["run_id", "label", "analysis", "kind", "model", "prompt_set", "params", "created", "n_rows", "seconds",
               "checks"]


def runs_table(runs: pd.DataFrame):
    if runs.empty:
        return html.P("No saved runs yet: run an analysis below (or `workbench run attention_profile`).",
                      className="muted")
    shown = runs[RUN_COLUMNS].copy()
    shown["created"] = shown["created"].astype(str).str[:19].str.replace("T", " ")
    shown["seconds"] = shown["seconds"].round(1)
    shown = shown.rename(columns={"run_id": "run (click: head map)"})
    mapped = set(runs.loc[runs["n_rows"] > 0, "run_id"])
    return table(shown, max_rows=100, csv="catalog",
                 links={"run (click: head map)": lambda r: f"/heads?run={quote(r)}" if r in mapped else None})


def manage_options(ctx: AppContext) -> list[dict]:
    """Every catalogued result, then the damaged run directories the catalog skips (these can only be deleted)."""
    damaged = wb.damaged_runs(ctx.results_dir)
    return controllers.run_options(ctx.results()) + [
        {"label": f"⚠ damaged: {r['analysis']}/{r['run_id']}: {r['problem'][:90]}", "value": r["run_id"]}
        for r in damaged.to_dict("records")]


def manage_card(ctx: AppContext):
    """Label a run (shown in every run list) or delete it (after a confirmation; it moves to the results' .trash)."""
    options = manage_options(ctx)
    return card("Label or delete a run", [
        html.Div([
            field("run", dcc.Dropdown(id=ids.OV_MANAGE_RUN, options=options, clearable=False,
                                      value=options[0]["value"] if options else None), width="560px"),
            field("label", dcc.Input(id=ids.OV_LABEL, type="text", maxLength=wb.LABEL_MAX_CHARS,
                                     placeholder="e.g. baseline, seed 0", className="wide-input"),
                  hint=f"at most {wb.LABEL_MAX_CHARS} characters, one line; empty clears it", width="300px"),
            html.Button("Save label", id=ids.OV_LABEL_SAVE, n_clicks=0),
            html.Button("Delete run…", id=ids.OV_DELETE, n_clicks=0, className="danger"),
        ], className="row"),
        dcc.ConfirmDialog(id=ids.OV_CONFIRM),
        html.Div(id=ids.OV_MANAGE_MESSAGE)])


def definitions_card():
    """What each analysis's score is (definition; unit; direction), from the analyses' specs."""
    rows = [{"analysis": a, "score": wb.describe_score(a)} for a in wb.list_analyses()["analysis"]]
    return card("What the scores mean", table(pd.DataFrame(rows), csv="score_definitions"))


def layout(state: dict, ctx: AppContext):
    facts = ctx.model_facts
    runs = ctx.results()
    model_rows = [("model", ctx.model), ("layers × heads", f"{facts.get('layers', '?')} × {facts.get('heads', '?')}"),
                  ("KV heads", facts.get("kv_heads", "?")), ("context", facts.get("n_ctx", "?")),
                  ("weights", facts.get("available", "?"))]
    model_card = card("Model", [
        html.Table([html.Tbody([html.Tr([html.Th(k), html.Td(str(v))]) for k, v in model_rows])],
                   className="wb-table kv"),
        html.Div(id=ids.OV_WORKER, className="muted"),
        dcc.Interval(id=ids.OV_POLL, interval=1000, max_intervals=600)])
    sets = (runs.groupby(["prompt_set", "model"]).size().reset_index(name="runs") if not runs.empty
            else pd.DataFrame(columns=["prompt_set", "model", "runs"]))
    prompts_card = card("Prompt sets", [
        html.P("Bundled natural text: windows of Python's pydoc topics (public domain), used by "
               "attention_profile and the interventions page. Prompt sets used by saved runs:", className="muted"),
        table(sets) if not sets.empty else html.P("none yet", className="muted")])
    run_card = card("Run an analysis", [
        html.Div([
            field("analysis", dcc.Dropdown(id=ids.OV_ANALYSIS, options=[], placeholder="loading the worker…",
                                           clearable=False), width="420px"),
            field("parameters", dcc.Input(id=ids.OV_PARAMS, type="text", placeholder="n_prompts=2, n_tokens=128",
                                          debounce=True, className="wide-input"),
                  hint=f"name=value, comma-separated; empty = the analysis defaults. {wb.BUDGET_TEXT} "
                       f"Circuits are named (e.g. reference={wb.DEFAULT_MODEL}_ioi), never paths.", width="360px"),
            html.Button("Run", id=ids.OV_RUN, className="primary", n_clicks=0),
        ], className="row"),
        *job_slots(ids.OV_JOB, ids.OV_JOB_POLL, ids.OV_PROGRESS),
        html.Div(id=ids.OV_MESSAGE)])
    return page("Attention workbench", "Which heads do what, and what happens if you change them?",
                html.Div([model_card, prompts_card], className="grid-2"), run_card,
                card(f"Runs in the catalog ({len(runs)})", html.Div(runs_table(runs), id=ids.OV_RUNS)),
                manage_card(ctx), definitions_card())
