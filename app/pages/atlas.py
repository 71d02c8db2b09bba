"""Atlas: one model's heads × metrics as ranks (a sortable, filterable table and a heatmap), each metric's top-k
stability and causal verdict, roles to filter by, and CSV export; the commands to run when there is no atlas."""

from __future__ import annotations

from dash import dash_table, dcc, html

import workbench.api as wb
from workbench_app import atlas_controllers as ac
from workbench_app import ids
from workbench_app.context import AppContext
from workbench_app.pages.common import alert, card, field, page, png_config, table

SUBTITLE = ("Every head of one model across the saved analyses: rank 1 = strongest (by |value| for signed metrics). "
            "Sort or filter the table, filter by role, click a head for its profile.")


def matrix_view(ctx: AppContext, model: str, roles):
    """(rank table data + columns, heatmap figure) of a model's atlas, heads filtered by `roles`."""
    atlas = ctx.atlas(model)
    matrix = ac.rank_matrix(atlas, roles)
    metrics = list(atlas.metrics["metric"])
    data = matrix.assign(id=matrix["head"]).to_dict("records")  # row ids: a clicked cell names its head
    columns = [{"name": c.replace(".", ".\u200b").replace("_", "_\u200b"), "id": c,  # headers may wrap
                "type": "text" if c in ("head", "roles") else "numeric"} for c in matrix.columns]
    shown = ac.heatmap_frame(matrix, metrics)
    what = f"{len(shown)} of {len(matrix)} heads" + (f" holding {', '.join(roles)}" if roles else "")
    fig = wb.plot_ranks(shown, n_heads_total=atlas.n_layers * atlas.n_heads,
                        title=f"{model}: rank by metric · {what} with the best ranks",
                        signed=atlas.metrics.loc[atlas.metrics["signed"].astype(str) == "True", "metric"])
    return data, columns, fig


def _no_atlas(model: str, message: str) -> html.Div:
    return card(None, [alert(message, "warn"), html.P(["To build it: ", html.Code(ac.build_commands(model))]),
                       html.P("Then reload this page.", className="muted")])


def layout(state: dict, ctx: AppContext):
    models = ctx.atlas_models()
    model = state.get("model") if state.get("model") in models else ctx.model
    picker = html.Div([field("model", dcc.Dropdown(id=ids.AT_MODEL, options=models, value=model, clearable=False),
                             width="260px")], className="row")
    try:
        atlas = ctx.atlas(model)
    except wb.WorkbenchError as exc:
        return page("Atlas", SUBTITLE, picker, html.Div(id=ids.AT_MESSAGE), _no_atlas(model, str(exc)))
    roles = [r for r in (state.get("role") or "").split(",") if r in ac.role_options(atlas)]
    data, columns, fig = matrix_view(ctx, model, roles)
    picker.children.append(field("heads holding a role", dcc.Dropdown(
        id=ids.AT_ROLE, options=ac.role_options(atlas), value=roles, multi=True, placeholder="any head"),
        width="420px"))
    picker.children.append(html.Button("Download values + intervals (CSV)", id=ids.AT_DOWNLOAD_GO, n_clicks=0))
    created = str(getattr(atlas.record, "created", ""))[:16]
    facts = (f"{atlas.n_layers} layers × {atlas.n_heads} heads · {len(atlas.metrics)} metrics · "
             f"built {created} from {len(atlas.params.get('runs', []))} saved runs · {atlas.params.get('n_boot')} "
             f"bootstrap resamples")
    missing = atlas.missing
    gaps = [] if missing.empty else [card(f"Not in this atlas yet ({len(missing)})", [
        table(missing.fillna("–")), html.P(["Run them all, then rebuild: ", html.Code(ac.build_commands(model))],
                                            className="muted")])]
    matrix = dash_table.DataTable(
        id=ids.AT_MATRIX, data=data, columns=columns, sort_action="native", filter_action="native",
        sort_by=[{"column_id": "best rank", "direction": "asc"}],
        page_size=20, export_format="csv", export_headers="ids", style_table={"overflowX": "auto"},
        style_cell_conditional=[{"if": {"column_id": "roles"}, "minWidth": "300px", "maxWidth": "420px",
                                 "textAlign": "left"}],
        style_cell={"fontFamily": "ui-monospace, Menlo, monospace", "fontSize": 12, "padding": "3px 6px",
                    "minWidth": "70px", "maxWidth": "160px", "whiteSpace": "normal"},
        style_header={"fontWeight": 600, "whiteSpace": "normal"})
    return page(
        "Atlas", SUBTITLE, picker, html.Div(id=ids.AT_MESSAGE), html.P(facts, id="at-facts", className="muted"),
        dcc.Download(id=ids.AT_DOWNLOAD),
        card("Metrics: top-k stability under bootstrap resamples of prompts, and the causal check",
             html.Div(table(ac.metrics_table(atlas), max_rows=500), id=ids.AT_METRICS)),
        card("Heads × metrics (ranks)", [
            html.P("Click a cell (or a heatmap square) for that head's profile link; Export writes the rows shown, "
                   "after filters, as CSV.", className="field-hint"),
            html.Div(id=ids.AT_LINK, className="progress-line"), matrix]),
        card(None, dcc.Graph(id=ids.AT_HEATMAP, figure=fig, config=png_config(f"atlas_{model}_ranks"))),
        *gaps)
