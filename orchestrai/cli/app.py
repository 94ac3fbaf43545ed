"""The `orchestrai` console script: `main` hands the command line to the typer app in `commands.py`.

One exception, for start-up time: `orchestrai validate FILE... [--config PATH]` (the form editors,
pre-commit hooks and CI run over and over) is answered without importing typer: importing it,
building the click commands and coercing the options through pydantic is ~12% of the instructions of
a `validate` (35-45 ms of ~0.3 s here). Only plain forms take this path: any other word (`--help`,
`--`, `-cPATH`, an unknown option, a repeated --config, no file) goes to typer, so what typer would
print for them (help, usage errors) is unchanged. Both paths run the same `validate_pipelines`, print
the same lines and exit with the same codes (tests/test_startup_imports.py compares them).

`app` (and the other typer objects) can still be imported from here, as before.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any, TextIO

_CONFIG_FLAGS = ("--config", "-c")


def main() -> None:
    """The console-script entry point."""
    request = quick_validate_request(sys.argv[1:])
    if request is not None:
        sys.exit(quick_validate(*request))
    from .commands import app

    app()


def quick_validate_request(args: list[str]) -> tuple[list[Path], Path | None] | None:
    """(pipelines, config) when `args` is a plain `validate FILE... [--config PATH]`; None sends them to typer."""
    if not args or args[0] != "validate" or sys.platform == "win32":  # click expands wildcards on Windows
        return None
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ):
        return None  # a shell-completion request: click answers it
    pipelines: list[str] = []
    config: str | None = None
    words = args[1:]
    position = 0
    while position < len(words):
        word = words[position]
        if word in _CONFIG_FLAGS and position + 1 < len(words):
            value, position = words[position + 1], position + 2
        elif word.startswith("--config="):
            value, position = word[len("--config="):], position + 1
        elif word and not word.startswith("-"):
            pipelines.append(word)
            position += 1
            continue
        else:
            return None
        if config is not None or not value or value.startswith("-"):
            return None
        config = value
    if not pipelines or not all(_plain_text(word) for word in args):
        return None
    return [Path(p) for p in pipelines], (Path(config) if config is not None else None)


def quick_validate(pipelines: list[Path], config: Path | None) -> int:
    """Run `validate` as the typer command would, with typer's handling of errors; returns the exit code."""
    from ..errors import OrchestraiError
    from .validatecmd import validate_pipelines

    try:
        try:
            return validate_pipelines(pipelines, config, echo)
        except OrchestraiError as exc:  # as the commands' `user_errors`: one or two lines, never a traceback
            from .render import print_error

            print_error(exc)
            return exc.exit_code
    except KeyboardInterrupt:  # typer: exit 130, nothing printed
        return 130
    except EOFError:
        sys.stderr.write("\nAborted!\n")
        return 1
    except OSError as exc:  # a closed pipe (`orchestrai validate ... | head -0`): exit 1 quietly, as click does
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout = _IgnoreClosedPipe(sys.stdout)
        sys.stderr = _IgnoreClosedPipe(sys.stderr)
        return 1


def echo(text: str) -> None:
    """Print one line as `typer.echo` does (it is used for what this simple write cannot match)."""
    out = sys.stdout
    if out is None:
        return
    encoding = (getattr(out, "encoding", None) or "").lower().replace("_", "-")
    if "\033" in text or encoding not in ("utf-8", "utf8"):
        import typer  # strips ANSI codes when piped, writes UTF-8 to a stream set up as ASCII

        typer.echo(text)
        return
    out.write(text + "\n")
    out.flush()


def _plain_text(word: str) -> bool:
    """False for arguments that are not valid Unicode (undecodable bytes): typer's checks decide those."""
    try:
        word.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _IgnoreClosedPipe:
    """A stream whose flush ignores a closed pipe (click's PacifyFlushWrapper), so exiting prints nothing."""

    def __init__(self, wrapped: TextIO) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def __getattr__(name: str) -> Any:
    """`app`, `logs_app`, `cache_app`, `user_errors`, ...: the typer objects, imported on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    from . import commands

    try:
        return getattr(commands, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
