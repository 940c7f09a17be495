"""The click pieces every command is built from.

A command module defines `command`: a function taking one `Args` (its parameters as attributes)
and returning the exit status, made a command with `@studio_command(...)` and click's parameter
decorators (`option` here may put an option in a titled section of the help). Running it goes
through `defer`: the command line is parsed completely first (studio.command_group.parse hands back a
`Call`), and then run, so the studio app can parse a command sent by another process, check that
it only reads, and run the same handler (studio/ipc_server.py).

`--workspace/-w` and `--wait` are options of `studio` and of every command: `studio -w A import x`
and `studio import x -w A` both work, the command's own value winning (`args_of`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click

from ._help import example_lines, keep_lines

WORKSPACE_HELP = "workspace folder (default: $STUDIO_WORKSPACE, else ./studio-workspace)"
WAIT_HELP = ("if another process holds the workspace, wait up to SECONDS for it instead of failing "
             "(default: $STUDIO_WAIT, else 0)")
RUNNER = "studio.runner"  # ctx.meta key: what to do with a parsed Call (studio.command_group.parse keeps it)
ARGV = "studio.argv"      # ctx.meta key: the command line as given


class Args(SimpleNamespace):
    """A command's parameters as attributes: each of its options and arguments (the default when not
    given; a repeated or variadic one as a list), the top-level ones (workspace, wait, verbose, serve,
    port), `command` (the top-level command's name; None for the app) and `argv` (the command line)."""


Handler = Callable[[Args], "int | None"]


@dataclass(frozen=True)
class Call:
    """A parsed command line: the handler and its Args. Calling it runs the command."""

    handler: Handler
    args: Args

    def __call__(self) -> int:
        return int(self.handler(self.args) or 0)


def args_of(ctx: click.Context, defaults: dict[str, Any] | None = None) -> Args:
    """The Args of `ctx`: the parameters of `studio`, then of each command level down to this one.
    A level's None (an option not given there) leaves the value above it (`studio -w A stats`), and
    so does a flag left False under one given above (`studio models --json list`)."""
    chain: list[click.Context] = []
    level: click.Context | None = ctx
    while level is not None:
        chain.append(level)
        level = level.parent
    chain.reverse()
    values: dict[str, Any] = dict(defaults or {})
    for level in chain:
        for name, value in level.params.items():
            if isinstance(value, tuple):
                value = list(value)
            if (value is None or value is False) and values.get(name) not in (None, False):
                continue
            values[name] = value
    values["command"] = chain[1].info_name if len(chain) > 1 else None
    values["argv"] = ctx.meta.get(ARGV)
    return Args(**values)


def defer(ctx: click.Context, handler: Handler, defaults: dict[str, Any] | None = None,
          check: Callable[[Args], None] | None = None) -> Any:
    """Hand the Call to the runner studio.command_group.parse left in ctx.meta; without one, run it. `check`
    looks at the Args while parsing: a click.UsageError from it is a usage error (exit 2)."""
    call = Call(handler, args_of(ctx, defaults))
    if check is not None:
        try:
            check(call.args)
        except click.UsageError as exc:
            exc.ctx = exc.ctx or ctx
            raise
    runner = ctx.meta.get(RUNNER)
    return runner(call) if runner is not None else call()


# -- parameter types ----------------------------------------------------------------------------
def parse_seconds(text: str) -> float:
    """`"2.5"` -> 2.5; ValueError with the message for anything but a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{text!r}: give a number of seconds, 0 or more")
    return value


class Seconds(click.ParamType):
    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_seconds(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class CommaList(click.ParamType):
    """`8,16,32` -> [8, 16, 32] of `kind`."""

    def __init__(self, kind: type):
        self.kind = kind
        self.name = f"{kind.__name__} list"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list:
        if isinstance(value, list):
            return value
        try:
            values = [self.kind(v) for v in str(value).split(",") if v.strip()]
        except ValueError:
            self.fail(f"{value!r}: expected comma-separated {self.kind.__name__}s", param, ctx)
        if not values:
            self.fail("give at least one value", param, ctx)
        return values


# -- parameters ---------------------------------------------------------------------------------
argument = click.argument  # with help= (click 8.5), listed under "Positional arguments"


class Opt(click.Option):
    """An option that may sit in a titled section of the help (`section="remote host"`)."""

    def __init__(self, *args: Any, section: str | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.section = section


def option(*decls: str, **kw: Any) -> Callable:
    return click.option(*decls, cls=Opt, **kw)


def workspace_options(fn: Callable) -> Callable:
    fn = option("--wait", type=Seconds(), metavar="SECONDS", help=WAIT_HELP)(fn)
    return option("--workspace", "-w", type=click.Path(path_type=Path), metavar="DIR", help=WORKSPACE_HELP)(fn)


def json_option(fn: Callable, help: str = "print machine-readable JSON") -> Callable:
    return option("--json", is_flag=True, help=help)(fn)


# -- help layout --------------------------------------------------------------------------------
class _Help:
    """Help with the description's and the epilog's lines kept (_help.py) and options in their
    sections."""

    help: str | None
    epilog: str | None

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.help:
            formatter.write_paragraph()
            formatter.write(keep_lines(self.help, formatter.width - 2, "  ") + "\n")

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.epilog:  # at the margin, so an example line copies as it is
            formatter.write_paragraph()
            formatter.write(keep_lines(self.epilog, formatter.width) + "\n")

    def format_params(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Options": []}
        for p in self.get_params(ctx):  # type: ignore[attr-defined]
            record = None if isinstance(p, click.Argument) else p.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(p, "section", None) or "Options", []).append(record)
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


class StudioCommand(_Help, click.Command):
    """A command: its callback takes one Args and returns the exit status. `defaults` are values
    the handler reads that no option of this command sets; `check(args)` refuses a combination of
    options with click.UsageError while parsing; `help_sections()` gives more (title, rows) for its
    --help, computed only when the help is shown."""

    def __init__(self, *args: Any, defaults: dict[str, Any] | None = None,
                 check: Callable[[Args], None] | None = None,
                 help_sections: Callable[[], list[tuple[str, list[tuple[str, str]]]]] | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.defaults = defaults or {}
        self.check = check
        self.help_sections = help_sections

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.format_params(ctx, formatter)
        for title, rows in self.help_sections() if self.help_sections else []:
            with formatter.section(title):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        assert self.callback is not None
        return defer(ctx, self.callback, self.defaults, self.check)


class StudioGroup(_Help, click.Group):
    """A command with sub-commands (`studio augment OPERATION`). With `default` (a handler), the
    group alone runs it (`studio models` lists); without, it asks for a sub-command (exit 2)."""

    def __init__(self, *args: Any, default: Handler | None = None, **kw: Any):
        self.default = default
        kw.pop("callback", None)
        kw["invoke_without_command"] = default is not None
        super().__init__(*args, callback=click.pass_context(self._run_default), **kw)

    def _run_default(self, ctx: click.Context, **_params: Any) -> Any:
        if ctx.invoked_subcommand is None and self.default is not None:
            return defer(ctx, self.default)
        return None

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.format_params(ctx, formatter)
        self.format_commands(ctx, formatter)


def studio_command(name: str, help: str, *, json_flag: bool = False, epilog: str | None = None,
            description: str | None = None, cls: type[click.Command] = StudioCommand, **kw: Any) -> Callable:
    """Decorator: the handler (Args -> exit status) becomes the command `name`, with --workspace/-w,
    --wait and, with json_flag, --json. `help` is its line in `studio --help`; `description` (default:
    `help`) heads its own --help; the epilog keeps its lines (examples one a line)."""

    def decorate(fn: Callable) -> click.Command:
        if json_flag:
            fn = json_option(fn)
        fn = workspace_options(fn)
        return click.command(name, cls=cls, help=description or help, short_help=help,
                             epilog=example_lines(epilog), **kw)(fn)

    return decorate


def studio_group(name: str, help: str, *, default: Handler | None = None, json_flag: bool = False,
          epilog: str | None = None, description: str | None = None, **kw: Any) -> Callable:
    """Decorator for a function declaring a group's own options (its body is not run): the group
    `name`; its sub-commands are `@studio_command`s added with `the_group.add_command(sub)`."""

    def decorate(fn: Callable) -> StudioGroup:
        if json_flag:
            fn = json_option(fn)
        fn = workspace_options(fn)
        params = list(reversed(getattr(fn, "__click_params__", [])))
        return StudioGroup(name, params=params, help=description or help, short_help=help,
                           epilog=example_lines(epilog), default=default, **kw)

    return decorate
