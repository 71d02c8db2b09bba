"""create_app: the Dash app on one model, reading the results catalog. The app process never imports torch:
model work goes to `workbench.worker` in a child process (workbench_app.worker_client.WorkerClient)."""

from __future__ import annotations

import traceback
from pathlib import Path

import dash
from dash import Input, Output, State, dcc, html

import workbench.api as wb
from workbench_app import controllers, ids
from workbench_app.callbacks import atlas as atlas_cb
from workbench_app.callbacks import attention as attention_cb
from workbench_app.callbacks import circuits as circuits_cb
from workbench_app.callbacks import compare as compare_cb
from workbench_app.callbacks import head_profile as head_profile_cb
from workbench_app.callbacks import heads as heads_cb
from workbench_app.callbacks import interventions as interventions_cb
from workbench_app.callbacks import jobs as jobs_cb
from workbench_app.callbacks import overview as overview_cb
from workbench_app.callbacks import tokens as tokens_cb
from workbench_app.callbacks.common import log
from workbench_app.context import AppContext
from workbench_app.pages import atlas, circuits, compare, head_profile, heads, interventions, jobs, overview, tokens
from workbench_app.pages import attention as attention_page
from workbench_app.pages.common import alert, card, page

PAGES = {"/": overview.layout, "/heads": heads.layout, "/compare": compare.layout, "/circuits": circuits.layout,
         "/interventions": interventions.layout, "/tokens": tokens.layout, "/atlas": atlas.layout,
         "/head": head_profile.layout, "/jobs": jobs.layout, "/attention": attention_page.layout}


def _model_facts(model: str) -> dict:
    try:
        return wb.describe_model(model)
    except wb.WorkbenchError:
        return {"name": model}


def _warm_up() -> None:
    """Build one heatmap now: plotly's first figure costs ~0.4 s of imports, which the first page should not pay."""
    import pandas as pd

    wb.plot_heads(pd.DataFrame({"layer": [0], "head": [0], "score": [0.0]})).to_plotly_json()


def _request_failed(exc):
    """A request Dash itself cannot route (a malformed callback payload): a one-line 400, not a 500 page."""
    from flask import jsonify, request
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return exc
    log.error("request %s failed:\n%s", request.path, traceback.format_exc())
    if request.path.endswith("/_dash-update-component"):
        return jsonify(error=f"Malformed callback request ({type(exc).__name__}: {str(exc)[:200]}); reload the "
                             "page."), 400
    return jsonify(error=f"The server could not answer ({type(exc).__name__}); see the server log."), 500


def shell() -> html.Div:
    nav = html.Nav([html.Span("◉ attention workbench", className="brand")] +
                   [dcc.Link(title, href=path, className="nav-link", id=f"nav-{path.strip('/') or 'overview'}")
                    for path, title in controllers.PAGES.items()], id=ids.NAV, className="nav")
    return html.Div([dcc.Location(id=ids.URL, refresh=False), nav, html.Main(id=ids.CONTENT)], className="shell")


def create_app(model: str = wb.DEFAULT_MODEL, *, results_dir: Path | str | None = None, worker=None,
               start_worker: bool = True, circuits_dir: Path | str | None = None, device: str = "auto",
               dtype: str = "float32") -> dash.Dash:
    """The dashboard. `worker`: a WorkerClient (default: one for `model` on `device` in `dtype`, started now
    unless start_worker=False); `circuits_dir`: where saved circuits live (default: the repository's circuits/)."""
    if worker is None and start_worker:
        from workbench_app.worker_client import WorkerClient

        worker = WorkerClient(model, worker_args=("--device", device, "--dtype", dtype))
        worker.start()
    ctx = AppContext(model=model, results_dir=Path(results_dir) if results_dir else None, worker=worker,
                     model_facts=_model_facts(model), circuits_dir=Path(circuits_dir) if circuits_dir else None)
    app = dash.Dash(__name__, title="Attention workbench", suppress_callback_exceptions=True,
                    assets_folder=str(Path(__file__).parent / "assets"), update_title=None)
    app.layout = shell()
    _warm_up()
    app.server.config["MAX_CONTENT_LENGTH"] = 8 * 2**20  # a pasted book gets a clear 413, not a stuck server
    app.workbench_context = ctx
    app.server.register_error_handler(Exception, _request_failed)

    @app.callback(Output(ids.CONTENT, "children"), *[Output(f"nav-{p.strip('/') or 'overview'}", "className")
                                                     for p in controllers.PAGES],
                  Input(ids.URL, "pathname"), State(ids.URL, "search"))
    def route(pathname, search):
        classes = ["nav-link active" if p == pathname else "nav-link" for p in controllers.PAGES]
        render = PAGES.get(pathname) if isinstance(pathname, str) else None
        if render is None:
            return page("Not found", f"There is no page {str(pathname)[:80]!r}.",
                        card(None, dcc.Link("Go to the overview", href="/"))), *classes
        return _render(render, controllers.parse_query(search)), *classes

    def _render(render, state):
        try:
            return render(state, ctx)
        except Exception as exc:  # noqa: BLE001 - a broken page shows a message, the server keeps serving
            log.error("page failed:\n%s", traceback.format_exc())
            return page("Cannot show this page", "", alert(str(exc) if isinstance(exc, wb.WorkbenchError) else
                                                           f"{type(exc).__name__}: {exc}"))

    for module in (overview_cb, heads_cb, compare_cb, circuits_cb, interventions_cb, tokens_cb, atlas_cb,
                   head_profile_cb, jobs_cb, attention_cb):
        module.register(app, ctx)
    return app
