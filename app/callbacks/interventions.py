"""Interventions wiring: map clicks toggle heads; the Run button (only) turns the form into a worker job and the
URL into the whole request; the result becomes tables."""

from __future__ import annotations

import pandas as pd
from dash import Input, Output, State, html
from dash.exceptions import PreventUpdate

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app import intervention_controllers as IC
from workbench_app.callbacks.common import guarded, polled
from workbench_app.context import AppContext
from workbench_app.pages.common import alert, table
from workbench_app.pages.interventions import saved_card


def _highlight(text, n_layers, n_heads):
    try:
        return [(r.layer, r.head) for r in map(wb.HeadRef.parse, controllers.parse_head_field(text, n_layers, n_heads))]
    except wb.WorkbenchError:
        return []


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.IV_MAP, "figure"), Input(ids.IV_RUN_MAP, "value"), Input(ids.IV_HEADS, "value"))
    def show_map(run_id, heads):
        runs = ctx.runs()
        if not isinstance(run_id, str) or run_id not in set(runs["run_id"]):
            if run_id in (None, ""):
                raise PreventUpdate
            return wb.plot_placeholder(f"{str(run_id)[:60]!r} is not a saved run; pick one from the list.")
        scores = controllers.load_scores(run_id, runs)
        heads = heads if isinstance(heads, str) else ""
        fig = wb.plot_heads(scores, highlight=_highlight(heads, *controllers.shape_of(scores)),
                            title=controllers.map_title(scores, "score"), height=620)
        fig.update_layout(margin=dict(l=50, r=10, t=40, b=40))
        return fig

    @app.callback(Output(ids.IV_HEADS, "value"), Input(ids.IV_MAP, "clickData"), State(ids.IV_HEADS, "value"),
                  prevent_initial_call=True)
    def toggle(click, current):
        head = controllers.head_from_click(click)
        if head is None:
            raise PreventUpdate
        return controllers.toggle_head(current if isinstance(current, str) and len(current) <= 2000 else "", head)

    @app.callback(Output(ids.IV_JOB, "data"), Output(ids.IV_JOB_POLL, "disabled"),
                  Output(ids.URL, "search", allow_duplicate=True), Output(ids.IV_MESSAGE, "children"),
                  Input(ids.IV_GO, "n_clicks"),
                  State(ids.IV_HEADS, "value"), State(ids.IV_EDIT, "value"), State(ids.IV_ALPHA, "value"),
                  State(ids.IV_KEYS, "value"), State(ids.IV_METRIC, "value"), State(ids.IV_SOURCE, "value"),
                  State(ids.IV_TYPED, "value"), State(ids.IV_N, "value"), State(ids.IV_TOKENS, "value"),
                  State(ids.IV_PATCH, "value"), prevent_initial_call=True)
    @guarded
    def submit(clicks, heads, edit, alpha, keys, metric, source, typed, n, tokens, patch):
        if not clicks:  # opening a URL fills the form in; only the button runs a model job
            raise PreventUpdate
        args = IC.intervention_request(heads=heads, edit=edit, alpha=alpha, keys=keys, metric=metric,
                                       source=source, typed=typed, n_prompts=n, n_tokens=tokens,
                                       patch_text=patch, n_layers=ctx.shape[0], n_heads=ctx.shape[1])
        if ctx.worker is None:
            raise controllers.AppInputError("Model work is off (the app was started without a model worker).")
        job = ctx.worker.submit("intervene", args)
        query, note = IC.request_query({"typed": typed, "patch": patch}, args)
        return job, True, query, [alert(note, "warn")] if note else []  # the poll turns its timer on

    @app.callback(Output(ids.IV_SUMMARY, "children"), Output(ids.IV_TABLE, "children"),
                  Output(ids.IV_FIGURE, "figure"), Output(ids.IV_HISTORY, "children"),
                  Output(ids.IV_JOB_POLL, "disabled", allow_duplicate=True),
                  Output(ids.IV_PROGRESS, "children"),
                  Input(ids.IV_JOB_POLL, "n_intervals"), Input(ids.IV_JOB, "data"), prevent_initial_call=True)
    @polled(ctx, 4)
    def poll(result):
        per_prompt, aggregate = IC.intervention_frames(result)
        fig = wb.plot_before_after(pd.DataFrame(result["rows"]), title="; ".join(result.get("edits", [])))
        saved = f"saved run {result['run_id']}" if result.get("run_id") else "not saved"
        return (html.Div([html.H4("Aggregate"), table(aggregate, id="iv-aggregate-table")]),
                html.Div([html.H4("Per prompt"), table(per_prompt, id="iv-result-table")]),
                fig, saved_card(IC.saved_interventions(ctx.results_dir, ctx.model)),
                f"{len(per_prompt)} prompts of {result.get('prompt_set', '?')}, clean and edited; {saved}")

