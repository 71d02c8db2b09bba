"""Jobs: the model worker's queue, the running job first, then the waiting ones and the last finished; each
waiting or running job has a Cancel button."""

from __future__ import annotations

from dash import dcc, html

from workbench.api import format_duration
from workbench_app import ids
from workbench_app.callbacks.common import cancel_button, progress_line
from workbench_app.context import AppContext
from workbench_app.pages.common import card, page

STATUS = {"running": "running", "queued": "queued", "done": "✓ done", "error": "✕ failed", "cancelled": "✕ cancelled"}


def jobs_table(jobs: list[dict]) -> html.Div:
    """One row per job: what it is, its state (place in the queue, progress bar), time, Cancel."""
    if not jobs:
        return html.P("No jobs yet: model work (patterns, token traces, interventions, runs) shows up here.",
                      className="muted")
    rows = []
    for job in jobs:
        pending = job["status"] in ("queued", "running")
        state = progress_line({**job, "id": None}) if pending else STATUS.get(job["status"], job["status"])
        seconds = job.get("seconds") if not pending and job.get("seconds") is not None else job.get("elapsed", 0.0)
        rows.append(html.Tr([html.Td(job.get("label") or job.get("op")), html.Td(state),
                             html.Td(format_duration(seconds), className="num"), html.Td(cancel_button(job))],
                            className=f"job-{job['status']}"))
    header = html.Thead(html.Tr([html.Th("job"), html.Th("state"), html.Th("time"), html.Th("")]))
    return html.Table([header, html.Tbody(rows)], className="wb-table jobs")


def layout(state: dict, ctx: AppContext):
    worker = ctx.worker
    body = (jobs_table(worker.jobs()) if worker is not None else
            html.P("Model work is off (the app was started without a model worker).", className="muted"))
    return page("Jobs", f"The model worker's queue on {ctx.model}: one job runs at a time, in order; Cancel drops a "
                        "waiting job or stops the running one within seconds.",
                card(None, [dcc.Interval(id=ids.JOBS_POLL, interval=1000, disabled=worker is None),
                            html.Div(body, id=ids.JOBS_TABLE)]))
