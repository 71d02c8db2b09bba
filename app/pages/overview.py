"""Overview: the model, the prompt sets and analyses, the runs in the catalog, and running an analysis."""

from __future__ import annotations

from urllib.parse import quote

import pandas as pd
from dash import dcc, html

import workbench.api as wb
from workbench_app import ids
from workbench_app.context import AppContext
from workbench_app.pages.common import card, field, job_slots, page, table

RUN_COLUMNS = ["run_id", "analysis", "model", "prompt_set", "created", "n_rows", "seconds", "checks"]


def runs_table(runs: pd.DataFrame):
    if runs.empty:
        return html.P("No saved runs yet: run an analysis below (or `workbench run attention_profile`).",
                      className="muted")
    shown = runs[RUN_COLUMNS].copy()
    shown["created"] = shown["created"].astype(str).str[:19].str.replace("T", " ")
    shown["seconds"] = shown["seconds"].round(1)
    shown = shown.rename(columns={"run_id": "run (click: head map)"})
    return table(shown, max_rows=100, links={"run (click: head map)": lambda r: f"/heads?run={quote(r)}"})


def layout(state: dict, ctx: AppContext):
    facts = ctx.model_facts
    runs = ctx.runs()
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
                card(f"Runs in the catalog ({len(runs)})", html.Div(runs_table(runs), id=ids.OV_RUNS)))
