"""Shared callback helpers: turn any exception into a visible message, and poll a worker job showing its progress."""

from __future__ import annotations

import functools
import logging
import traceback

from dash import callback_context, html, no_update
from dash.exceptions import PreventUpdate

from workbench.api import WorkbenchError
from workbench_app.pages.common import alert

log = logging.getLogger("workbench.app")


def guarded(fn):
    """Run a callback; on error, leave every output unchanged except the LAST, which gets an alert."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PreventUpdate:
            raise
        except WorkbenchError as exc:
            message = str(exc)
        except Exception as exc:  # never a traceback page: log it, show one line, keep serving
            log.error("callback %s failed:\n%s", fn.__name__, traceback.format_exc())
            message = f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the server log."
        n = len(callback_context.outputs_list) if isinstance(callback_context.outputs_list, list) else 1
        if n == 1:
            return alert(message)
        return tuple([no_update] * (n - 1) + [alert(message)])
    return wrapper


def polled(ctx, n_results: int):
    """Turn ``show(result) -> (*outputs, what)`` into a poll callback ``(n_intervals, job) -> (*outputs, poll
    disabled, progress)``: while the job runs the outputs stay and the progress line updates; a failed job leaves
    the outputs and shows its message; a finished one gets ``show``'s outputs and "✓ what in 1.23 s"."""
    def decorate(show):
        @functools.wraps(show)
        def poll(_n, job):
            if not job or ctx.worker is None:
                raise PreventUpdate
            status = ctx.worker.status(job)
            if status["status"] in ("queued", "running"):
                return (*[no_update] * n_results, False, progress_line(status))
            if status["status"] != "done":
                return (*[no_update] * n_results, True, alert(status["message"]))
            *outputs, what = show(status["result"])
            return (*outputs, True, done_line(status, what))
        return guarded(poll)
    return decorate


def link_clicks_to_profiles(app, out_id: str, graph_ids: tuple[str, ...], state_ids: tuple[str, ...], model_of):
    """Clicking a head on any of the maps `graph_ids` shows a link to its profile in `out_id`;
    `model_of(graph_id, *values of state_ids)` says which model that map shows."""
    from dash import Input, Output, State

    from workbench_app.controllers import head_from_click
    from workbench_app.pages.common import profile_link

    @app.callback(Output(out_id, "children"), *[Input(g, "clickData") for g in graph_ids],
                  *[State(s, "value") for s in state_ids], prevent_initial_call=True)
    @guarded
    def link(*args):
        which = callback_context.triggered_id
        head = head_from_click(args[graph_ids.index(which)]) if which in graph_ids else None
        if head is None:
            raise PreventUpdate
        return profile_link(model_of(which, *args[len(graph_ids):]), head)


def progress_line(status: dict) -> html.Div:
    """'⏳ loading <model> · 3.2 s' with an indeterminate bar while a job is queued or running."""
    text = status.get("message") or status.get("status")
    return html.Div([html.Div(className="spinner"), html.Span(f"{text} · {status.get('elapsed', 0.0):.1f} s")],
                    className="progress-running")


def done_line(status: dict, what: str) -> html.Div:
    seconds = status.get("seconds")
    return html.Div(f"✓ {what}" + (f" in {seconds:.2f} s" if isinstance(seconds, (int, float)) else ""),
                    className="progress-done")
