"""Small shared building blocks: tables (each with a CSV download), figure configs (PNG download), head links,
alerts, labelled fields, progress lines, cards."""

from __future__ import annotations

import re
from typing import Any, Iterable
from urllib.parse import quote, urlencode

import pandas as pd
from dash import dcc, html

import workbench.api as wb
from workbench_app import ids


def file_name(name: Any) -> str:
    """A download's file name from a run id, head, title …: letters, digits, '.', '_', '-' only."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(name)).strip("_.")[:100] or "workbench"


def png_config(name: Any) -> dict:
    """A dcc.Graph config showing plotly's toolbar, whose camera button downloads the figure as `<name>.png`."""
    return {"displayModeBar": True, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
            "toImageButtonOptions": {"format": "png", "filename": file_name(name), "scale": 2}}


def csv_link(df: pd.DataFrame, name: Any) -> html.A:
    """A "CSV" button downloading all of `df` (not only the rows shown) as `<name>.csv`, in the browser."""
    return html.A("⤓ CSV", href="data:text/csv;charset=utf-8," + quote(df.to_csv(index=False)),
                  download=f"{file_name(name)}.csv", className="csv-link", title=f"download as {file_name(name)}.csv")


def table(df: pd.DataFrame, *, id: str | None = None, max_rows: int = 50, links: dict[str, Any] | None = None,
          head_buttons: str | None = None, csv: str | None = None) -> html.Div:
    """A plain, legible HTML table with a CSV button (file `csv`, default its id); `links` maps a column to a
    function value -> href (None: no link); `head_buttons` names a column whose L{l}H{h} cells become buttons
    selecting that head."""
    links = links or {}
    header = html.Thead(html.Tr([html.Th(str(c)) for c in df.columns]))
    body = []
    for row in df.head(max_rows).to_dict("records"):
        cells = []
        for col in df.columns:
            value = row[col]
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            if col == head_buttons:
                cells.append(html.Td(html.Button(text, id={"type": ids.TOP_HEAD_BUTTON, "index": text},
                                                 className="head-chip", n_clicks=0)))
            elif col in links and links[col](value):
                cells.append(html.Td(dcc.Link(text, href=links[col](value))))
            else:
                cells.append(html.Td(text, className="num" if isinstance(value, (int, float)) else None))
        body.append(html.Tr(cells))
    kwargs = {"id": id} if id else {}
    return html.Div([html.Table([header, html.Tbody(body)], className="wb-table", **kwargs),
                     csv_link(df, csv or id or "table")], className="table-block")


def profile_link(model: str, head: str) -> html.Span:
    """Links to a head's profile page (every metric, roles, circuits, attention, one-click ablation) and to
    Interventions with the head filled in (a link only: nothing runs until Run is clicked)."""
    from workbench_app.atlas_controllers import profile_href

    return html.Span([dcc.Link(f"{head}: open its profile →", href=profile_href(model, head), className="profile-link"),
                      dcc.Link(f"intervene on {head} →", href="/interventions?" + urlencode({"heads": head}),
                               className="profile-link intervene-link")], className="head-links")


def definition(analysis: str, column: str) -> html.P:
    """What a map's column is (definition; unit; direction), from the analysis's spec (workbench.api.describe_score)."""
    try:
        text = wb.describe_score(analysis, column)
    except wb.WorkbenchError:
        text = ""
    return html.P([html.B(f"{column}: "), text or f"no definition in the {analysis} spec's columns."],
                  className="score-definition")


def alert(message: str, kind: str = "error") -> html.Div:
    return html.Div(message, className=f"alert alert-{kind}", role="alert")


def field(label: str, component, hint: str | None = None, width: str | None = None) -> html.Div:
    children = [html.Label(label, className="field-label"), component]
    if hint:
        children.append(html.Div(hint, className="field-hint"))
    return html.Div(children, className="field", style={"width": width} if width else None)


def card(title: str | None, children: Iterable | Any, **kwargs) -> html.Div:
    body = list(children) if isinstance(children, (list, tuple)) else [children]
    return html.Div(([html.H3(title, className="card-title")] if title else []) + body, className="card", **kwargs)


JOB_SLOTS: dict[str, tuple[str, str]] = {}  # job Store id -> (its poll Interval id, its progress line id)


def job_slots(job_id: str, poll_id: str, progress_id: str) -> list:
    """The Store + Interval + progress line a page needs to run one worker job and show its progress (with a
    Cancel button while it waits or runs). Registered, so that a refused submit clears the last result
    (callbacks.common.guarded) and every new job starts from a clean screen (callbacks.common.polled)."""
    JOB_SLOTS[job_id] = (poll_id, progress_id)
    return [dcc.Store(id=job_id), dcc.Interval(id=poll_id, interval=400, disabled=True),
            html.Div(id=progress_id, className="progress-line")]


def page(title: str, subtitle: str, *children) -> html.Div:
    return html.Div([html.H1(title, className="page-title"), html.P(subtitle, className="page-subtitle"),
                     *children], className="page")
