"""Shared pieces of the CLI: consoles, the one-line error wrapper (`friendly`: numbers and output paths checked
first), click's usage errors as one line (`OneLineErrors`), table printing, name=value parsing."""

from __future__ import annotations

import functools
import sys
import typing
from pathlib import Path
from typing import List

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors its own click
    from typer._click import exceptions as click_errors
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_errors
    from click import get_current_context

from workbench.core import validation
from workbench.core.errors import WorkbenchError
from workbench.core.validation import check_device_names  # noqa: F401  (re-exported for the CLI modules)
from workbench.models import DEFAULT_MODEL

# One definition of the model-placement options, added right after --model on every model command.
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps | map (device_map='auto')")
DTYPE = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16 (statistics accumulate in float32)")

_WIDTH = None if sys.stdout.isatty() else 160
console = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)


OUTPUT_OPTIONS = ("out", "report")  # Path options a command writes to: checked for writability first

MODEL = typer.Option(DEFAULT_MODEL, "--model", "-m", help="model name (see `workbench models`), HF id or directory")


def error_line(message: str) -> None:
    """One line on stderr, never wrapped, never read as rich markup."""
    err.print(Text.assemble(("error:", "bold red"), " ", str(message)), soft_wrap=True, highlight=False)


def friendly(fn=None, *, out_dirs: tuple[str, ...] = ()):
    """Check numbers and output paths first, and show user errors as one clear line (exit 2), not a traceback.

    `out_dirs` names the output options that are directories (the others are files).
    """
    if fn is None:
        return lambda f: friendly(f, out_dirs=out_dirs)
    numbers, outputs = _checked_params(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            labels = _option_labels()
            for name, kind in numbers.items():
                if kwargs.get(name) is not None:
                    kwargs[name] = validation.check_number(name, kwargs[name], kind, scope=fn.__name__,
                                                           label=labels.get(name, _flag(name)))
            for name in outputs:
                if kwargs.get(name) is not None:
                    validation.check_output_path(kwargs[name], labels.get(name, _flag(name)),
                                                 "dir" if name in out_dirs else "file")
            return fn(*args, **kwargs)
        except WorkbenchError as exc:
            error_line(str(exc))
            raise typer.Exit(2) from None
    return wrapper


def _checked_params(fn) -> tuple[dict[str, type], list[str]]:
    """(numeric parameters → int | float, output path parameters) of a command function."""
    numbers, outputs = {}, []
    for name, hint in typing.get_type_hints(fn).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint
        if base is int or base is float:
            numbers[name] = base
        elif base is Path and name in OUTPUT_OPTIONS:
            outputs.append(name)
    return numbers, outputs


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option_labels() -> dict[str, str]:
    """Parameter name → its longest flag in the running click command (e.g. depths → --depths)."""
    ctx = get_current_context(silent=True)
    if ctx is None:
        return {}
    return {p.name: max(p.opts, key=len) for p in ctx.command.params if getattr(p, "opts", None)}


class OneLineErrors(TyperGroup):
    """The root group: click usage errors (bad option values, unknown options) as one line, exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                sys.exit(exc.exit_code)
            error_line(_usage_message(exc))
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            error_line(exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            error_line("aborted.")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def _usage_message(exc) -> str:
    """click's message, plus the allowed range for a number option and where help is."""
    message = " ".join(exc.format_message().split())
    param = getattr(exc, "param", None)
    callback = getattr(getattr(exc.ctx, "command", None), "callback", None)
    if isinstance(exc, click_errors.BadParameter) and param is not None and param.name and callback is not None:
        kind = _checked_params(callback)[0].get(param.name)
        if kind is not None:
            label = max(param.opts, key=len) if getattr(param, "opts", None) else param.name
            return f"{message.rstrip('.')}; {label} must be {validation.describe(param.name, kind, callback.__name__)}."
    path = exc.ctx.command_path if exc.ctx is not None else "workbench"
    return f"{message} (see `{path} --help`)"


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


def save_figures(figures: dict, out: Path, prefix: str = "") -> list[str]:
    """Each figure as `<out>/<prefix><name>.html` (see save_figure); prints and returns the file names."""
    names = [save_figure(fig, Path(out) / f"{prefix}{name}.html").name for name, fig in figures.items()]
    console.print(f"figures written to {out}/ ({', '.join(names)})")
    return names


def save_figure(fig, path) -> Path:
    """Write a plotly figure as self-contained HTML (plotly.js inlined: the workbench runs offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True)
    return path
