"""Shared callback helpers: turn any exception into a visible message, and poll a worker job showing its progress.

A page's job (pages.common.job_slots) gets this for free: while the job waits or runs its outputs are blank and the
progress line shows the queue place or a bar with counts, rate and estimate, and a Cancel button; a failed or
cancelled job leaves them blank under its message; a refused submit (an exception in a `guarded` callback whose
outputs include the job Store) blanks them too. Outputs that are not the job's result: `polled(..., keep=(i,))`.
"""

from __future__ import annotations

import functools
import logging
import traceback

from dash import callback_context, html, no_update
from dash.exceptions import PreventUpdate

from workbench.api import WorkbenchError, format_duration
from workbench_app import ids
from workbench_app.pages.common import JOB_SLOTS, alert

log = logging.getLogger("workbench.app")


BLANK_FIGURE = {"data": [], "layout": {}}  # dcc.Graph's own empty figure (plotly.js draws no heatmap after hidden axes)


def _outputs() -> list[dict]:
    outputs = callback_context.outputs_list
    return outputs if isinstance(outputs, list) else [outputs]


def guarded(fn):
    """Run a callback; on error, leave every output unchanged except the LAST, which gets an alert (and a job Store
    among the outputs gets a 'refused' marker naming that output: the Store triggers `polled`, which blanks the last
    result but not the alert)."""
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
        outputs = _outputs()
        if len(outputs) == 1:
            return alert(message)
        values = [no_update] * (len(outputs) - 1) + [alert(message)]
        names = [o.get("id") if isinstance(o, dict) else None for o in outputs]
        for i, name in enumerate(names[:-1]):
            if isinstance(name, str) and name in JOB_SLOTS and outputs[i].get("property") == "data":
                poll, progress = JOB_SLOTS[name]
                # the job Store triggers its poll, which clears the last result but not this message
                values[i] = {"refused": True, "keep_progress": progress in names, "message": names[-1]}
                if poll in names[:-1]:
                    values[names.index(poll)] = True
        return tuple(values)
    return wrapper


LONG_POLL_S = 0.3  # a poll waits this long for its job to end: a 0.1 s job shows ~0.1 s after its click


def polled(ctx, n_results: int, keep: tuple[int, ...] = ()):
    """Turn ``show(result) -> (*outputs, what)`` into a poll callback ``(n_intervals, job) -> (*outputs, poll
    disabled, progress)``, triggered by the poll Interval and by the job Store (so the first poll goes out as soon
    as the job is submitted, and waits up to LONG_POLL_S for it to end). While the job waits or runs, the outputs
    are blank (but those at `keep`) and the progress line updates; a failed or cancelled job leaves them blank under
    its message; a finished one gets ``show``'s outputs and "✓ what in 1.23 s"."""
    def decorate(show):
        @functools.wraps(show)
        def poll(_n, job):
            outputs = _outputs()[:n_results]
            blank = tuple(no_update if i in keep else BLANK_FIGURE if o.get("property") == "figure" else None
                          for i, o in enumerate(outputs))
            if isinstance(job, dict) and job.get("refused"):  # keep the refusal's message where it was written
                blank = tuple(no_update if o.get("id") == job.get("message") else b
                              for o, b in zip(outputs, blank, strict=True))
                return (*blank, True, no_update if job.get("keep_progress") else None)
            if not job or ctx.worker is None:
                raise PreventUpdate
            status = ctx.worker.wait(job, LONG_POLL_S)  # answers the moment a short job ends
            if status["status"] in ("queued", "running"):
                return (*blank, False, progress_line(status))
            if status["status"] == "cancelled":
                return (*blank, True, cancelled_line(status))
            if status["status"] != "done":
                return (*blank, True, alert(status["message"]))
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
    """A queued or running job: '2nd in queue, behind intervene · 3.2 s', or its tqdm bar 'desc · 3/10 · 1.2 it/s
    · ~6 s left'; then a Cancel button (while it has an id)."""
    text, bar = status.get("message") or status.get("status"), status.get("progress")
    if isinstance(bar, dict) and bar.get("total"):
        parts = [f"{bar['done']}/{bar['total']}"]
        if isinstance(bar.get("rate"), (int, float)):
            parts.append(f"{bar['rate']:.3g} {bar.get('unit') or 'it'}/s")
        if isinstance(bar.get("eta_s"), (int, float)):
            parts.append(f"~{format_duration(bar['eta_s'])} left")
        body = [html.Progress(value=str(bar["done"]), max=str(bar["total"]), className="job-bar"),
                html.Span(" · ".join([text, *parts]))]
    else:
        body = [html.Div(className="spinner"), html.Span(f"{text} · {status.get('elapsed', 0.0):.1f} s")]
    return html.Div([*body, *cancel_button(status)], className="progress-running")


def cancel_button(status: dict) -> list:
    """[a Cancel button for the job] while it waits or runs (ids.JOB_CANCEL; callbacks.jobs cancels it)."""
    if not isinstance(status.get("id"), str) or status.get("status") not in ("queued", "running"):
        return []
    cancelling = bool(status.get("cancelling"))
    return [html.Button("Cancelling…" if cancelling else "Cancel", id={"type": ids.JOB_CANCEL, "job": status["id"]},
                        disabled=cancelling, className="job-cancel", n_clicks=0)]


def done_line(status: dict, what: str) -> html.Div:
    seconds = status.get("seconds")
    return html.Div(f"✓ {what}" + (f" in {seconds:.2f} s" if isinstance(seconds, (int, float)) else ""),
                    className="progress-done")


def cancelled_line(status: dict) -> html.Div:
    seconds = status.get("seconds")
    after = f" after {seconds:.1f} s" if isinstance(seconds, (int, float)) and seconds else ""
    why = status.get("message") if status.get("message") not in (None, "", "cancelled") else None
    return html.Div(f"✕ cancelled{after}" + (f" ({why})" if why else ""), className="progress-cancelled")
