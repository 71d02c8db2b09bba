"""Tokens wiring: prompt + optional head → token_traces job in the worker → the three-panel figure."""

from __future__ import annotations

from dash import Input, Output, State

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app.callbacks.common import guarded, polled
from workbench_app.context import AppContext


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.TK_JOB, "data"), Output(ids.TK_JOB_POLL, "disabled"),
                  Output(ids.URL, "search", allow_duplicate=True), Output(ids.TK_MESSAGE, "children"),
                  Input(ids.TK_GO, "n_clicks"), State(ids.TK_PROMPT, "value"), State(ids.TK_TEXT, "value"),
                  State(ids.TK_HEAD, "value"), State(ids.TK_WINDOW, "value"),
                  prevent_initial_call="initial_duplicate")
    @guarded
    def submit(_clicks, prompt, text, head, window):
        if ctx.worker is None:
            raise controllers.AppInputError("Model views are off (the app was started without a model worker).")
        window = controllers.int_in(window, 1, 512, "The WAAD window")
        head = head.strip() if isinstance(head, str) and head.strip() else None
        if head:
            (head,) = controllers.parse_head_field(head, *ctx.shape, allow_many=False)
        body = controllers.prompt_text(prompt, text)
        job = ctx.worker.submit("token_traces", {"text": body, "window": window, "head": head})
        query = controllers.build_query({"prompt": prompt, "head": head, "window": window,
                                         "text": body if prompt == "custom" and len(body) <= 500 else None})
        return job, True, query, []  # the poll (on the job) turns its timer on

    @app.callback(Output(ids.TK_FIGURE, "figure"), Output(ids.TK_JOB_POLL, "disabled", allow_duplicate=True),
                  Output(ids.TK_PROGRESS, "children"),
                  Input(ids.TK_JOB_POLL, "n_intervals"), Input(ids.TK_JOB, "data"), prevent_initial_call=True)
    @polled(ctx, 1)
    def poll(res):
        what = f"{len(res['tokens'])} tokens" + controllers.truncation(res)
        return wb.plot_token_traces(res, title=f"Per-token attention · {ctx.model}"), what
