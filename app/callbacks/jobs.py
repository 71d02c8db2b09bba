"""Jobs wiring: the queue table refreshes every second; any Cancel button (a job's progress line, the queue
table) cancels its job in the worker."""

from __future__ import annotations

from dash import MATCH, Input, Output, callback_context
from dash.exceptions import PreventUpdate

from workbench_app import controllers, ids
from workbench_app.callbacks.common import guarded
from workbench_app.context import AppContext
from workbench_app.pages.jobs import jobs_table


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.JOBS_TABLE, "children"), Input(ids.JOBS_POLL, "n_intervals"), prevent_initial_call=True)
    @guarded
    def refresh(_n):
        if ctx.worker is None:
            raise PreventUpdate
        return jobs_table(ctx.worker.jobs())

    @app.callback(Output({"type": ids.JOB_CANCEL, "job": MATCH}, "disabled"),
                  Output({"type": ids.JOB_CANCEL, "job": MATCH}, "children"),
                  Input({"type": ids.JOB_CANCEL, "job": MATCH}, "n_clicks"), prevent_initial_call=True)
    @guarded
    def cancel(clicks):
        trigger = callback_context.triggered_id
        if not clicks or not isinstance(trigger, dict):
            raise PreventUpdate
        if ctx.worker is None:
            raise controllers.AppInputError("Model work is off (the app was started without a model worker).")
        status = ctx.worker.cancel(str(trigger.get("job"))[:40])
        if status["status"] == "unknown":
            raise controllers.AppInputError("No such job (it may have finished, or the app restarted).")
        return True, "Cancelling…" if status["status"] in ("queued", "running") else "Cancelled"
