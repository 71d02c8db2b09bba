"""Interventions: pick heads (on the map or typed), an edit and prompts; run; see before/after metrics."""

from __future__ import annotations

from dash import dcc, html

from workbench.api import MAX_EDIT_TOKENS, MAX_PROMPT_CHARS, MAX_PROMPTS
from workbench_app import controllers, ids
from workbench_app.context import AppContext
from workbench_app.pages.common import card, field, job_slots, page


def layout(state: dict, ctx: AppContext):
    runs = ctx.model_runs()
    edit = state.get("edit") if state.get("edit") in controllers.EDITS else "ablate"
    metric = state.get("metric") if state.get("metric") in controllers.METRICS else "loss"
    picker = card("Pick heads on a map", [
        dcc.Dropdown(id=ids.IV_RUN_MAP, options=controllers.run_options(runs),
                     value=None if runs.empty else runs["run_id"].iloc[0], clearable=runs.empty),
        html.Div("No saved run for this model: type heads instead." if runs.empty else
                 "Click a head to add it to the list; click again to remove it.", className="field-hint"),
        dcc.Graph(id=ids.IV_MAP, config={"displayModeBar": False}, style={"display": "none"} if runs.empty else {})])
    form = card("Edit", [
        html.Div([
            field("heads", dcc.Input(id=ids.IV_HEADS, type="text", value=state.get("heads", ""),
                                     placeholder="L3H5, L10H2", className="wide-input"), width="300px"),
            field("edit", dcc.Dropdown(id=ids.IV_EDIT, options=[{"label": v, "value": k}
                                                                for k, v in controllers.EDITS.items()],
                                       value=edit, clearable=False), width="230px"),
            field("scale α", dcc.Input(id=ids.IV_ALPHA, type="text", value=state.get("alpha", "0.0")),
                  hint="scale / re-weight", width="100px"),
            field("key positions", dcc.Input(id=ids.IV_KEYS, type="text", value=state.get("keys", "0")),
                  hint="re-weight, e.g. 0 or 0,-1", width="120px"),
            field("metric", dcc.Dropdown(id=ids.IV_METRIC, options=list(controllers.METRICS), value=metric,
                                         clearable=False), width="160px"),
        ], className="row"),
        html.Div([
            field("prompts", dcc.RadioItems(id=ids.IV_SOURCE, options=[
                {"label": " bundled natural text", "value": "natural"},
                {"label": " typed (one per line)", "value": "typed"}], value="natural", inline=True),
                width="380px"),
            field("prompts (n)", dcc.Input(id=ids.IV_N, type="number", min=1, max=controllers.MAX_PROMPTS,
                                           value=controllers.int_or(state.get("n"), 1, 16, 4)), width="100px"),
            field("tokens each", dcc.Input(id=ids.IV_TOKENS, type="number", min=8, max=1024,
                                           value=controllers.int_or(state.get("tokens"), 8, 1024, 64)),
                  hint="8–1,024", width="100px"),
        ], className="row"),
        html.Div([
            dcc.Textarea(id=ids.IV_TYPED, placeholder=f"Typed prompts, one per line (at most {MAX_PROMPTS}, "
                         f"{MAX_EDIT_TOKENS:,} tokens each, {MAX_PROMPT_CHARS:,} characters in all)",
                         className="prompt-box"),
            dcc.Textarea(id=ids.IV_PATCH, placeholder="Patch sources (patch only), one per line, same token "
                         "count as each prompt; empty = later windows of the bundled text", className="prompt-box"),
        ], className="grid-2"),
        html.Button("Run intervention", id=ids.IV_GO, className="primary", n_clicks=0),
        *job_slots(ids.IV_JOB, ids.IV_JOB_POLL, ids.IV_PROGRESS),
        html.Div(id=ids.IV_MESSAGE),
    ])
    results = card("Before / after", [html.Div(id=ids.IV_SUMMARY), dcc.Graph(id=ids.IV_FIGURE,
                                                                               config={"displaylogo": False}),
                                      html.Div(id=ids.IV_TABLE)])
    return page("Interventions", f"Edit heads of {ctx.model} and measure the change, prompt by prompt.",
                html.Div([html.Div([picker], className="col-left narrow"),
                          html.Div([form, results], className="col-right wide")], className="split"))
