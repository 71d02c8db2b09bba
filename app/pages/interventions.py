"""Interventions: pick heads (on the map or typed), an edit and a prompt set (natural text, typed prompts with
answers, a circuit task with its corrupted twins, NIAH); run; see before/after metrics. The URL fills the form in;
only the Run button starts a job."""

from __future__ import annotations

from dash import dcc, html

from workbench.api import MAX_EDIT_TOKENS, MAX_PROMPT_CHARS, MAX_PROMPTS
from workbench_app import controllers, ids
from workbench_app import intervention_controllers as IC
from workbench_app.context import AppContext
from workbench_app.pages.common import card, field, job_slots, page, table

TYPED_HINT = (f"one prompt per line (at most {MAX_PROMPTS}, {MAX_EDIT_TOKENS:,} tokens each, {MAX_PROMPT_CHARS:,} "
              "characters in all); add the answer after a tab, 'prompt ⇥ answer', and the wrong answer after a second "
              "tab for logit_diff, 'prompt ⇥ answer ⇥ wrong' (a tab, or type \\t); each answer one token")


def saved_card(saved) -> list:
    """Title and table of the model's saved interventions (re-drawn after each run)."""
    return [html.H3(f"Saved interventions ({len(saved)})", className="card-title"),
            table(saved, max_rows=20) if not saved.empty else
            html.P("None yet: each run is saved to the catalog.", className="muted")]


def layout(state: dict, ctx: AppContext):
    runs = ctx.model_runs()
    form = IC.form_state(state)
    edit, metric = form["edit"], form["metric"]
    picker = card("Pick heads on a map", [
        dcc.Dropdown(id=ids.IV_RUN_MAP, options=controllers.run_options(runs),
                     value=None if runs.empty else runs["run_id"].iloc[0], clearable=runs.empty),
        html.Div("No saved run for this model: type heads instead." if runs.empty else
                 "Click a head to add it to the list; click again to remove it.", className="field-hint"),
        dcc.Graph(id=ids.IV_MAP, config={"displayModeBar": False}, style={"display": "none"} if runs.empty else {})])
    saved = IC.saved_interventions(ctx.results_dir, ctx.model)
    editor = card("Edit", [
        html.Div([
            field("heads", dcc.Input(id=ids.IV_HEADS, type="text", value=form["heads"],
                                     placeholder="L3H5, L10H2", className="wide-input"), width="300px"),
            field("edit", dcc.Dropdown(id=ids.IV_EDIT, options=[{"label": v, "value": k}
                                                                for k, v in controllers.EDITS.items()],
                                       value=edit, clearable=False), width="230px"),
            field("scale α", dcc.Input(id=ids.IV_ALPHA, type="text", value=form["alpha"]),
                  hint="scale / re-weight", width="100px"),
            field("key positions", dcc.Input(id=ids.IV_KEYS, type="text", value=form["keys"]),
                  hint="re-weight, e.g. 0 or 0,-1", width="120px"),
            field("metric", dcc.Dropdown(id=ids.IV_METRIC, options=list(controllers.METRICS), value=metric,
                                         clearable=False), width="160px"),
        ], className="row"),
        html.Div([
            field("prompt set", dcc.Dropdown(id=ids.IV_SOURCE, options=[{"label": v, "value": k} for k, v in
                                                                          IC.sources().items()],
                                             value=form["source"], clearable=False),
                  hint="task sets patch clean ← corrupted twin", width="300px"),
            field("n", dcc.Input(id=ids.IV_N, type="number", value=form["n"]), hint=f"prompts, 1–{MAX_PROMPTS}",
                  width="100px"),
            field("tokens each", dcc.Input(id=ids.IV_TOKENS, type="number", value=form["tokens"]),
                  hint=f"natural text, NIAH: 8–{MAX_EDIT_TOKENS:,}", width="130px"),
        ], className="row"),
        html.Div([
            dcc.Textarea(id=ids.IV_TYPED, value=form["typed"], placeholder="Typed prompts: " + TYPED_HINT,
                         className="prompt-box"),
            dcc.Textarea(id=ids.IV_PATCH, value=form["patch"], placeholder="Patch sources (patch only), one per "
                         "line, same token count as each prompt; empty = the corrupted twins of a task set, or later "
                         "windows of the bundled text", className="prompt-box"),
        ], className="grid-2"),
        html.Button("Run intervention", id=ids.IV_GO, className="primary", n_clicks=0),
        *job_slots(ids.IV_JOB, ids.IV_JOB_POLL, ids.IV_PROGRESS),
        html.Div(id=ids.IV_MESSAGE),
    ])
    results = card("Before / after", [html.Div(id=ids.IV_SUMMARY), dcc.Graph(id=ids.IV_FIGURE,
                                                                               config={"displaylogo": False}),
                                      html.Div(id=ids.IV_TABLE)])
    history = card(None, html.Div(saved_card(saved), id=ids.IV_HISTORY))
    return page("Interventions", f"Edit heads of {ctx.model} and measure the change, prompt by prompt.",
                html.Div([html.Div([picker], className="col-left narrow"),
                          html.Div([editor, results, history], className="col-right wide")], className="split"))
