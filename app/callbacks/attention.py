"""Attention text wiring: Show / prev / next / page → one attention_window job → the page Store → drawn in the
browser by assets/attention_text.js (a clientside callback: hover and the head selector never reach the server)."""

from __future__ import annotations

from dash import Input, Output, State, callback_context, no_update
from dash.exceptions import PreventUpdate

from workbench_app import controllers, ids
from workbench_app.callbacks.common import guarded, polled, progress_line
from workbench_app.context import AppContext
from workbench_app.pages.attention import prompt_body
from workbench_app.pages.common import alert


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.AX_JOB, "data"), Output(ids.AX_JOB_POLL, "disabled"), Output(ids.AX_PROGRESS, "children"),
                  Output(ids.AX_PAGE, "value"), Output(ids.AX_MESSAGE, "children"),
                  Input(ids.AX_GO, "n_clicks"), Input(ids.AX_PREV, "n_clicks"), Input(ids.AX_NEXT, "n_clicks"),
                  Input(ids.AX_PAGE, "n_submit"), State(ids.AX_PAGE, "value"), State(ids.AX_LAYER, "value"),
                  State(ids.AX_SIZE, "value"), State(ids.AX_PROMPT, "value"), State(ids.AX_TEXT, "value"),
                  State(ids.AX_SHOWN, "data"), prevent_initial_call=True)
    @guarded
    def submit(_go, _prev, _next, _submit, page, layer, size, prompt, text, shown):
        trigger = callback_context.triggered_id
        if trigger is None:
            raise PreventUpdate
        if ctx.worker is None:
            return no_update, True, alert("Model views are off (the app was started without a model worker)."), \
                no_update, []
        n_layers, _ = ctx.shape
        layer = controllers.int_in(layer, 0, n_layers - 1, "Layer")
        size = controllers.int_in(size, 1, 1024, "The window")
        page = controllers.int_in(page, 1, 10_000, "Page", default=1)
        last = shown.get("n_pages") if isinstance(shown, dict) else None
        if trigger == ids.AX_PREV:
            page = max(1, page - 1)
        elif trigger == ids.AX_NEXT:
            page = page + 1 if not last else min(last, page + 1)
        job = ctx.worker.submit("attention_window", {"text": prompt_body(prompt, text), "layer": layer,
                                                     "page": page - 1, "size": size})
        return job, True, progress_line(ctx.worker.status(job)), page, []  # the poll turns its timer on

    @app.callback(Output(ids.AX_DATA, "data"), Output(ids.AX_SHOWN, "data"),
                  Output(ids.AX_JOB_POLL, "disabled", allow_duplicate=True),
                  Output(ids.AX_PROGRESS, "children", allow_duplicate=True),
                  Input(ids.AX_JOB_POLL, "n_intervals"), Input(ids.AX_JOB, "data"), prevent_initial_call=True)
    @polled(ctx, 2)
    def poll(res):
        what = (f"layer {res['layer']}: tokens {res['start']}–{res['stop'] - 1} of {res['n_tokens']:,} "
                f"(page {res['page'] + 1} of {res['n_pages']})")
        return res, {k: res[k] for k in ("layer", "page", "n_pages")}, what  # the page itself never goes back

    app.clientside_callback("function (data) { return window.attentionText.render(data); }",
                            Output(ids.AX_RENDERED, "children"), Input(ids.AX_DATA, "data"),
                            prevent_initial_call=True)

    @app.callback(Output(ids.URL, "search", allow_duplicate=True), Input(ids.AX_SHOWN, "data"),
                  State(ids.AX_PROMPT, "value"), State(ids.AX_SIZE, "value"), State(ids.URL, "search"),
                  prevent_initial_call=True)
    def sync_url(data, prompt, size, search):
        if not isinstance(data, dict):
            raise PreventUpdate
        head = controllers.parse_query(search).get("head", "")
        head = head if head.startswith(f"L{data.get('layer')}H") else None
        return controllers.build_query({"head": head, "layer": data.get("layer"), "page": int(data.get("page", 0)) + 1,
                                        "prompt": prompt if prompt != "custom" else None, "tokens": size})
