"""Head map wiring: run/column → map and top heads; click/type → selected head → pattern job → pattern."""

from __future__ import annotations

from dash import ALL, Input, Output, Patch, State, callback_context, html, no_update
from dash.exceptions import PreventUpdate

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app.callbacks.common import guarded, polled, progress_line
from workbench_app.context import AppContext
from workbench_app.pages.attention import link as attention_link
from workbench_app.pages.common import alert, png_config, profile_link, table
from workbench_app.pages.heads import map_view

HEAD_MESSAGE = "hm-head-message"


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.HM_COLUMN, "options"), Output(ids.HM_MAP, "figure"), Output(ids.HM_TOP, "children"),
                  Output(ids.HM_DEFINITION, "children"), Output(ids.HM_MAP, "config"),
                  Output(ids.HM_MESSAGE, "children"),
                  Input(ids.HM_RUN, "value"), Input(ids.HM_COLUMN, "value"), State(ids.HM_HEAD, "data"),
                  prevent_initial_call=True)
    @guarded
    def show_map(run_id, column, head):
        return *map_view(ctx, run_id, column, head), []

    @app.callback(Output(ids.HM_MAP, "figure", allow_duplicate=True), Input(ids.HM_HEAD, "data"),
                  prevent_initial_call=True)
    @guarded
    def mark_head(head):
        """Move the map's marker (trace 1) to the selected head: a few bytes, not the whole map again."""
        if not isinstance(head, str) or len(head) > 20:
            raise PreventUpdate
        ref = wb.HeadRef.parse(head)
        figure = Patch()
        figure["data"][1]["x"], figure["data"][1]["y"] = [ref.head], [ref.layer]
        return figure

    @app.callback(Output(ids.HM_HEAD, "data"), Output(ids.HM_HEAD_INPUT, "value"), Output(HEAD_MESSAGE, "children"),
                  Input(ids.HM_MAP, "clickData"), Input({"type": ids.TOP_HEAD_BUTTON, "index": ALL}, "n_clicks"),
                  Input(ids.HM_HEAD_GO, "n_clicks"), Input(ids.HM_HEAD_INPUT, "n_submit"),
                  State(ids.HM_HEAD_INPUT, "value"), State(ids.HM_RUN, "value"))
    @guarded
    def select_head(click, _top_clicks, _go, _submit, typed, run_id):
        trigger = callback_context.triggered[0] if callback_context.triggered else {"prop_id": ".", "value": None}
        prop = trigger["prop_id"]
        if prop.startswith(ids.HM_MAP + "."):
            head = controllers.head_from_click(click)
            if head is None:
                raise PreventUpdate
            return head, head, []
        if prop.startswith("{"):
            if not trigger["value"]:
                raise PreventUpdate
            head = callback_context.triggered_id["index"]
            return head, head, []
        if not typed:  # initial call with no head in the URL
            raise PreventUpdate
        scores = controllers.load_scores(run_id, ctx.runs())
        (head,) = controllers.parse_head_field(typed, *controllers.shape_of(scores), allow_many=False)
        return head, head, []

    @app.callback(Output(ids.HM_TITLE, "children"), Output(ids.HM_ACROSS, "children"),
                  Input(ids.HM_HEAD, "data"), State(ids.HM_RUN, "value"))
    @guarded
    def head_details(head, run_id):
        if not head or not isinstance(head, str):
            return "Click a head on the map", html.P("Select a head to compare its scores.", className="muted")
        ref = wb.HeadRef.parse(head[:20])
        runs = ctx.runs()
        model = controllers.load_scores(run_id, runs)["model"].iloc[0]
        across = controllers.head_across_runs(ref.layer, ref.head, model, runs)
        body = (table(across.drop(columns=["run_id"]), links={}, csv=f"{head}_across_runs") if not across.empty
                else html.P("No other runs for this model.", className="muted"))
        title = [f"{head}: attention pattern ", attention_link(str(ref), "· as text, to the full context →")]
        return title, [profile_link(model, str(ref)), body]

    @app.callback(Output(ids.HM_JOB, "data"), Output(ids.HM_JOB_POLL, "disabled"), Output(ids.HM_PROGRESS, "children"),
                  Input(ids.HM_HEAD, "data"), Input(ids.HM_PROMPT, "value"), Input(ids.HM_MAX, "value"),
                  Input(ids.HM_TEXT, "n_blur"), State(ids.HM_TEXT, "value"), State(ids.HM_RUN, "value"))
    @guarded
    def submit_pattern(head, prompt, max_tokens, _blur, text, run_id):
        if not head:
            raise PreventUpdate
        if not isinstance(head, str) or len(head) > 20:
            raise controllers.AppInputError("Choose one head, like L3H5 (or click one on the map).")
        if ctx.worker is None:
            return no_update, True, alert("Model views are off (the app was started without a model worker).")
        runs = ctx.runs()
        known = isinstance(run_id, str) and run_id in set(runs["run_id"])
        model = runs.loc[runs["run_id"] == run_id, "model"].iloc[0] if known else ctx.model
        if model != ctx.model:
            return no_update, True, alert(f"This run is of {model}; the app's model is {ctx.model}. "
                                          f"Start the app with --model {model} to see patterns.", "warn")
        tokens = controllers.int_in(max_tokens, 8, 512, "Max tokens")
        body = controllers.prompt_text(prompt, text)
        job = ctx.worker.submit("head_pattern", {"text": body, "head": head, "max_tokens": tokens})
        return job, True, progress_line(ctx.worker.status(job))  # the poll (on the job) turns its timer on

    @app.callback(Output(ids.HM_PATTERN, "figure"), Output(ids.HM_PATTERN, "config"),
                  Output(ids.HM_JOB_POLL, "disabled", allow_duplicate=True),
                  Output(ids.HM_PROGRESS, "children", allow_duplicate=True),
                  Input(ids.HM_JOB_POLL, "n_intervals"), Input(ids.HM_JOB, "data"), prevent_initial_call=True)
    @polled(ctx, 2)
    def poll_pattern(res):
        fig = wb.plot_pattern(res["tokens"], res["pattern"], head=res["head"], window_start=res["window_start"])
        return fig, png_config(f"pattern_{res['head']}"), \
            f"{res['head']} on {len(res['tokens'])} tokens" + controllers.truncation(res)

    @app.callback(Output(ids.URL, "search", allow_duplicate=True),
                  Input(ids.HM_RUN, "value"), Input(ids.HM_COLUMN, "value"), Input(ids.HM_HEAD, "data"),
                  Input(ids.HM_PROMPT, "value"), Input(ids.HM_MAX, "value"), State(ids.HM_TEXT, "value"),
                  prevent_initial_call=True)
    def sync_url(run_id, column, head, prompt, max_tokens, text):
        text = text if prompt == "custom" and isinstance(text, str) and len(text) <= 500 else None
        state = {"run": run_id, "col": column, "head": head, "prompt": prompt, "tokens": max_tokens, "text": text}
        return controllers.build_query({k: v for k, v in state.items()
                                        if isinstance(v, (str, int, float)) and len(str(v)) <= 500})
