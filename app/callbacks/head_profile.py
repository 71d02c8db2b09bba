"""Head profile wiring: the page's head → probe job → attention text per task (a clicked token becomes the query);
"Ablate this head" → ablation job → the effect on every task's metric; typing a head → its profile."""

from __future__ import annotations

from dash import ALL, MATCH, Input, Output, State, callback_context, html
from dash.exceptions import PreventUpdate

from workbench_app import atlas_controllers as ac
from workbench_app import controllers, ids
from workbench_app.callbacks.common import guarded, polled, progress_line
from workbench_app.context import AppContext
from workbench_app.pages import head_profile as profile_page
from workbench_app.pages.common import alert, table


def _probe_result(ctx: AppContext, job) -> dict:
    status = ctx.worker.status(job) if ctx.worker is not None else {"status": "unknown"}
    if status["status"] != "done":
        raise controllers.AppInputError("This head's attention is no longer in memory; reload the page.")
    return status["result"]


def register(app, ctx: AppContext) -> None:
    @app.callback(Output(ids.CONTENT, "children", allow_duplicate=True),
                  Output(ids.URL, "search", allow_duplicate=True), Output(profile_page.GO_MESSAGE, "children"),
                  Input(ids.HP_GO, "n_clicks"), Input(ids.HP_HEAD_INPUT, "n_submit"),
                  State(ids.HP_HEAD_INPUT, "value"), State(ids.URL, "search"), prevent_initial_call=True)
    @guarded
    def go(clicks, submits, typed, search):
        if not (clicks or submits):  # the page's own first render
            raise PreventUpdate
        if not typed or not isinstance(typed, str) or len(typed) > 20:
            raise controllers.AppInputError("Name one head, like L3H5.")
        model = controllers.parse_query(search).get("model") or ctx.model
        query = controllers.build_query({"model": model, "head": typed.strip()})
        return profile_page.layout(controllers.parse_query(query), ctx), query, []

    @app.callback(Output(ids.HP_PROBE_JOB, "data"), Output(ids.HP_PROBE_POLL, "disabled"),
                  Output(ids.HP_PROBE_PROGRESS, "children"), Input(profile_page.STATE, "data"))
    @guarded
    def submit_probe(state):
        if not isinstance(state, dict) or not state.get("live"):
            raise PreventUpdate
        job = ctx.worker.submit("head_probe", {"head": state["head"]})
        return job, True, progress_line(ctx.worker.status(job))  # the poll (on the job) turns its timer on

    @app.callback(Output(ids.HP_ATTENTION, "children"), Output(ids.HP_PROBE_POLL, "disabled", allow_duplicate=True),
                  Output(ids.HP_PROBE_PROGRESS, "children", allow_duplicate=True),
                  Input(ids.HP_PROBE_POLL, "n_intervals"), Input(ids.HP_PROBE_JOB, "data"), prevent_initial_call=True)
    @polled(ctx, 1)
    def poll_probe(res):
        return profile_page.attention_cards(res), f"{res['head']}'s attention on {len(res['tasks'])} tasks"

    @app.callback(Output({"type": ids.HP_TEXT, "task": MATCH}, "children"),
                  Input({"type": ids.HP_TOKEN, "task": MATCH, "index": ALL}, "n_clicks"),
                  State(ids.HP_PROBE_JOB, "data"), prevent_initial_call=True)
    @guarded
    def choose_query(clicks, job):
        trigger = callback_context.triggered_id
        if not trigger or not any(clicks):
            raise PreventUpdate
        task = next((t for t in _probe_result(ctx, job)["tasks"] if t["task"] == trigger["task"]), None)
        if task is None:
            raise PreventUpdate
        return profile_page.attention_text(task, int(trigger["index"]))

    @app.callback(Output(ids.HP_ABLATE_JOB, "data"), Output(ids.HP_ABLATE_POLL, "disabled"),
                  Output(ids.HP_ABLATE_PROGRESS, "children"),
                  Input(ids.HP_ABLATE, "n_clicks"), State(ids.HP_MODE, "value"), State(profile_page.STATE, "data"),
                  prevent_initial_call=True)
    @guarded
    def submit_ablation(n_clicks, mode, state):
        if not n_clicks or not isinstance(state, dict) or not state.get("live"):
            raise PreventUpdate
        if mode not in ac.ABLATION_MODES:
            raise controllers.AppInputError(f"Choose an ablation: {', '.join(ac.ABLATION_MODES)}.")
        job = ctx.worker.submit("ablate_everywhere", {"head": state["head"], "mode": mode})
        return job, True, progress_line(ctx.worker.status(job))  # the poll (on the job) turns its timer on

    @app.callback(Output(ids.HP_ABLATION, "children"), Output(ids.HP_ABLATE_POLL, "disabled", allow_duplicate=True),
                  Output(ids.HP_ABLATE_PROGRESS, "children", allow_duplicate=True),
                  Input(ids.HP_ABLATE_POLL, "n_intervals"), Input(ids.HP_ABLATE_JOB, "data"),
                  prevent_initial_call=True)
    @polled(ctx, 1)
    def poll_ablation(res):
        frame = ac.ablation_frame(res)
        body = [table(frame, id="hp-ablation-table"),
                html.P("worse by > 0: the task got worse without the head (a lower logit/probability difference, or a "
                       "higher loss).", className="field-hint")]
        if res.get("skipped"):
            body.append(alert(f"Not run here: {', '.join(s['label'] for s in res['skipped'])} (this model's tokenizer "
                              "cannot build them).", "warn"))
        return body, f"{res['head']} {res['mode']}-ablated on {len(frame)} tasks"
