"""Shared pieces of the CLI modules: consoles, the error wrapper, table printing, name=value parsing.

Sub-apps (workbench/cli_<topic>.py) import from here, and workbench/cli.py registers them.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List

import typer
from rich.console import Console
from rich.table import Table

from workbench.errors import WorkbenchError

# One definition of the model-placement options, added right after --model on every model command.
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps | map (device_map='auto')")
DTYPE = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16 (statistics accumulate in float32)")

_WIDTH = None if sys.stdout.isatty() else 160
console = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


def friendly(fn):
    """Show user errors as one clear line (exit 2) instead of a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except WorkbenchError as exc:
            err.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(2) from None
    return wrapper


def show(df, title: str | None = None, limit: int = 40) -> None:
    table = Table(title=title, show_lines=False)
    for col in df.columns:
        table.add_column(str(col), overflow="fold")
    for row in df.head(limit).itertuples(index=False):
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    if len(df) > limit:
        console.print(f"… {len(df) - limit} more rows")


def _params(items: List[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise WorkbenchError(f"Parameter {item!r} must look like name=value.")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def save_figure(fig, path) -> Path:
    """Write a plotly figure as self-contained HTML (plotly.js inlined: the workbench runs offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True)
    return path
