"""Every `workbench …` command the README shows still parses against the real command line: the command path
exists and every option and argument is accepted with a value of the right type (click's own parser; nothing
runs). The commands that do run are tested where their analyses are."""

from __future__ import annotations

import re
import shlex

import pytest
from typer.main import get_command

from workbench.cli.main import app
from workbench.core.paths import SOURCE_ROOT

README = (SOURCE_ROOT / "README.md").read_text()
PLACEHOLDERS = {"<run id>": "20260101T000000-abcdef", "<name>": "smollm2-135m_ioi"}


def readme_commands() -> list[list[str]]:
    """Argument lists of the README's workbench commands: fenced lines (`a && b` split, `x ls | du | rm --all`
    read as three subcommands of x) and inline `workbench …` code spans."""
    lines = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = re.split(r"\s{2,}#|\s#\s", line)[0]
            lines += [part for part in line.split("&&") if "workbench " in part]
    lines += re.findall(r"`((?:\.venv/bin/)?workbench [^`]+)`", README)
    commands = []
    for line in lines:
        for name, value in PLACEHOLDERS.items():
            line = line.replace(name, value)
        first, *alternatives = line.split(" | ")
        words = shlex.split(first)
        start = next(i for i, w in enumerate(words) if w.endswith("workbench"))
        head = words[start + 1:]
        commands.append(head)
        commands += [head[:-1] + shlex.split(alt) for alt in alternatives]
    return [c for c in commands if c and not re.search(r"[\[<]", " ".join(c))]  # synopses ([--port N], <check>)


def is_group(command) -> bool:
    return hasattr(command, "resolve_command")  # typer ships its own click: no isinstance on click.Group


def parse(command, args: list[str], parent=None):
    ctx = command.make_context(command.name, list(args), parent=parent)
    if is_group(command):
        protected = getattr(ctx, "protected_args", None) or getattr(ctx, "_protected_args", [])
        if not [*protected, *ctx.args] and command.invoke_without_command:  # e.g. `workbench app`
            return ctx
        _, sub, rest = command.resolve_command(ctx, [*protected, *ctx.args])
        return parse(sub, rest, ctx)
    return ctx


COMMANDS = readme_commands()


def test_the_readme_shows_the_main_job_and_commands_of_every_analysis():
    seen = {c[0] for c in COMMANDS}
    assert ["run", "attention_profile"] in COMMANDS and "app" in seen
    assert {"retrieval", "sinks", "circuits", "preplan", "divergence", "induction", "results"} <= seen


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a)[:60])
def test_a_readme_command_parses(args):
    ctx = parse(get_command(app), args)
    assert ctx.command.name in args and (not is_group(ctx.command) or ctx.command.invoke_without_command)
    assert not ctx.args, f"`workbench {' '.join(args)}`: arguments left over: {ctx.args}"


def test_the_parse_refuses_what_the_command_line_refuses():
    for args in (["retrieval", "score", "--nope"], ["induction", "check", "--k", "five"], ["no-such-command"]):
        with pytest.raises(Exception, match="No such|not a valid|Invalid value|should be a valid integer"):
            parse(get_command(app), args)
