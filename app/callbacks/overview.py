"""Overview wiring: worker status and analysis list, running an analysis with progress, the runs table, labelling
and deleting runs."""

from __future__ import annotations

from dash import Input, Output, State, html, no_update

import workbench.api as wb
from workbench_app import controllers, ids, requests
from workbench_app.callbacks.common import guarded, polled
from workbench_app.context import AppContext
from workbench_app.pages.common import alert
from workbench_app.pages.overview import manage_options, runs_table


def register(app, ctx: AppContext) -> None:
    def listed(run_id) -> str:
        """A run id from the label/delete list (catalogued or damaged), never a path."""
        if not isinstance(run_id, str) or run_id not in {o["value"] for o in manage_options(ctx)}:
            raise controllers.AppInputError("Pick a run from the list.")
        return run_id

    @app.callback(Output(ids.OV_WORKER, "children"), Output(ids.OV_ANALYSIS, "options"),
                  Output(ids.OV_ANALYSIS, "value"), Output(ids.OV_POLL, "disabled"),
                  Input(ids.OV_POLL, "n_intervals"), State(ids.OV_ANALYSIS, "value"))
    def worker_status(_n, current):
        info = ctx.worker.info if ctx.worker is not None else None
        if not info:
            return "model worker: loading the model…", no_update, no_update, False
        options = [{"label": f"{a['analysis']} — {a['summary']}", "value": a["analysis"]}
                   for a in info.get("analyses", [])]
        names = {o["value"] for o in options}
        value = current if isinstance(current, str) and current in names else (options[0]["value"] if options else None)
        return f"model worker: {info['model']} loaded ({info['n_layers']} × {info['n_heads']} heads)", options, \
            value, True

    @app.callback(Output(ids.OV_JOB, "data"), Output(ids.OV_JOB_POLL, "disabled"), Output(ids.OV_MESSAGE, "children"),
                  Input(ids.OV_RUN, "n_clicks"), State(ids.OV_ANALYSIS, "value"), State(ids.OV_PARAMS, "value"),
                  prevent_initial_call=True)
    @guarded
    def run_analysis(_clicks, analysis, params):
        if ctx.worker is None:
            raise controllers.AppInputError("Model work is off (the app was started without a model worker).")
        info = ctx.worker.info or {}
        saved = controllers.circuit_table(None)["name"]
        args = requests.analysis_request(analysis, params, info.get("analyses", []), saved)
        job = ctx.worker.submit("run_analysis", args)
        return job, True, []  # the poll (on the job) turns its timer on

    @app.callback(Output(ids.OV_RUNS, "children"), Output(ids.OV_MESSAGE, "children", allow_duplicate=True),
                  Output(ids.OV_JOB_POLL, "disabled", allow_duplicate=True), Output(ids.OV_PROGRESS, "children"),
                  Input(ids.OV_JOB_POLL, "n_intervals"), Input(ids.OV_JOB, "data"), prevent_initial_call=True)
    @polled(ctx, 2, keep=(0,))  # the runs table stays while a run waits
    def poll(result):
        run_id = result["run_id"]
        link = html.Div(["Open it in the ", html.A("head map", href=f"/heads?run={run_id}")],
                        className="alert alert-ok")
        return runs_table(ctx.results()), link, f"saved run {run_id}"

    @app.callback(Output(ids.OV_LABEL, "value"), Input(ids.OV_MANAGE_RUN, "value"))
    def current_label(run_id):
        if not isinstance(run_id, str):
            return ""
        runs = ctx.results()
        match = runs.loc[runs["run_id"] == run_id, "label"]
        return match.iloc[0] if len(match) else ""

    @app.callback(Output(ids.OV_RUNS, "children", allow_duplicate=True),
                  Output(ids.OV_MANAGE_RUN, "options"), Output(ids.OV_MANAGE_MESSAGE, "children"),
                  Input(ids.OV_LABEL_SAVE, "n_clicks"), State(ids.OV_MANAGE_RUN, "value"), State(ids.OV_LABEL, "value"),
                  prevent_initial_call=True)
    @guarded
    def save_label(_clicks, run_id, text):
        record = wb.label_run(controllers.check_run_id(run_id, ctx.results()), text or "", ctx.results_dir)
        said = f"labelled {record.run_id} {record.label!r}" if record.label else f"cleared the label of {run_id}"
        return runs_table(ctx.results()), manage_options(ctx), alert(said, "ok")

    @app.callback(Output(ids.OV_CONFIRM, "displayed"), Output(ids.OV_CONFIRM, "message"),
                  Output(ids.OV_MANAGE_MESSAGE, "children", allow_duplicate=True),
                  Input(ids.OV_DELETE, "n_clicks"), State(ids.OV_MANAGE_RUN, "value"), prevent_initial_call=True)
    @guarded
    def ask_delete(_clicks, run_id):
        return True, f"Delete run {listed(run_id)} and the checks of it? It moves to the results' .trash/.", []

    @app.callback(Output(ids.OV_RUNS, "children", allow_duplicate=True),
                  Output(ids.OV_MANAGE_RUN, "options", allow_duplicate=True),
                  Output(ids.OV_MANAGE_RUN, "value"), Output(ids.OV_MANAGE_MESSAGE, "children", allow_duplicate=True),
                  Input(ids.OV_CONFIRM, "submit_n_clicks"), State(ids.OV_MANAGE_RUN, "value"),
                  prevent_initial_call=True)
    @guarded
    def delete(_submitted, run_id):
        removed = wb.delete_run(listed(run_id), ctx.results_dir)
        options = manage_options(ctx)
        return (runs_table(ctx.results()), options, options[0]["value"] if options else None,
                alert(f"deleted {', '.join(removed)} (moved to .trash/ in the results directory)", "ok"))
