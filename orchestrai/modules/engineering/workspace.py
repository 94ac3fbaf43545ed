"""Where a run's code lives, what later steps are told about it, and consent to run it.

The codebase travels between steps as a JSON-able dict (the step output):

    {"workspace": "/abs/generated_code/<run id>", "entry_point": "main.py", "args": ["100"],
     "request": "...", "files": ["main.py", ...], "view": "<condensed view>", ...module facts}

The workspace on disk is the truth; `files` and `view` are what the step saw, for the log and for
custom modules. A workspace is a folder orchestrai created (it holds `.orchestrai/`): later steps write
to and run code only in such a folder, so a wrong path in some output cannot point them at a real project.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...api import ModuleError
from .sandbox import ensure_state_dir, state_dir
from .view import build_view, list_files
from .writer import Refused, check_path

if TYPE_CHECKING:
    from ...api import RunFacts, StepContext

DEFAULT_ENTRY_POINT = "main.py"
ENTRY_LINE = re.compile(r"(?im)^[\s*#>-]*entry[ _-]?point\W*?[:=]\s*\**\s*`?([^\s`*]+)`?")
RUN_LINE = re.compile(r"(?im)^[\s*#>-]*run\W*?[:=]\s*\**\s*`?([^`\n]+?)`?\s*$")


class ExecutionNotAllowed(ModuleError):
    """Generated code would run, but nobody allowed it."""


@dataclass
class Codebase:
    """The facts a step needs about the code: where it is and how to run it."""

    workspace: Path
    entry_point: str = DEFAULT_ENTRY_POINT
    args: list[str] = field(default_factory=list)
    request: str = ""

    @classmethod
    def from_inputs(cls, ctx: StepContext, inputs: dict[str, Any]) -> Codebase:
        """The codebase among the step's inputs (the output of an engineer, debugger or modify_codebase step)."""
        found = next((v for v in inputs.values() if isinstance(v, dict) and "workspace" in v), None)
        if found is None:
            raise ModuleError(f"step {ctx.step.id!r} ({ctx.step.module}) needs a codebase among its inputs",
                              hint="list the output of an engineer step in its inputs")
        request = found.get("request") or next((v for v in inputs.values() if isinstance(v, str)), "")
        return cls(Path(str(found["workspace"])), str(found.get("entry_point") or DEFAULT_ENTRY_POINT),
                   [str(a) for a in found.get("args") or []], str(request))

    def with_options(self, entry_point: str | None, args: list[str] | None) -> Codebase:
        """The step's own entry_point and args win over what earlier steps said."""
        return Codebase(self.workspace, entry_point or self.entry_point, self.args if args is None else list(args),
                        self.request)

    @property
    def command(self) -> str:
        return shlex.join(["python", self.entry_point, *self.args])

    def output(self, *, view_tokens: int | None, focus: tuple[str, ...] = (), **facts: Any) -> dict[str, Any]:
        """The step output later steps read (see the module docstring)."""
        files = list_files(self.workspace) if self.workspace.is_dir() else []
        data: dict[str, Any] = {"workspace": str(self.workspace), "entry_point": self.entry_point, "args": self.args,
                                "request": self.request, "files": files}
        if view_tokens is not None:
            data["view"] = self.view(view_tokens, focus, files) if files else ""
        return {**data, **facts}

    def view(self, budget_tokens: int, focus: tuple[str, ...] = (), files: list[str] | None = None) -> str:
        return build_view(self.workspace, budget_tokens=budget_tokens, focus=(self.entry_point, *focus), files=files)


def resolve_workspace(ctx: StepContext, option: str | None) -> Path:
    """--workspace, else the step's `workspace` option, else <config folder>/<workspace_dir>/<run id>."""
    facts = ctx.facts
    if facts.workspace is not None:
        return facts.workspace
    if option:
        return (facts.base_dir / Path(option).expanduser()).resolve()
    return facts.workspace_root / ctx.run_id


def prepare_workspace(path: Path) -> Path:
    """Create the workspace (and its .orchestrai/).

    Refuses a folder that already holds files orchestrai did not write.
    """
    if path.exists() and not path.is_dir():
        raise ModuleError(f"the workspace {path} exists and is not a folder",
                          hint="choose another path with --workspace")
    if path.is_dir() and any(path.iterdir()) and not _is_marked(path):
        raise ModuleError(f"the workspace {path} already holds files that orchestrai did not write",
                          hint="choose a new or empty folder with --workspace (orchestrai overwrites files there)")
    path.mkdir(parents=True, exist_ok=True)
    ensure_state_dir(path)
    return path.resolve()


def require_workspace(ctx: StepContext, path: Path) -> Path:
    """The workspace of an earlier step, which must be a folder orchestrai created."""
    if not path.is_dir() or not _is_marked(path):
        raise ModuleError(f"step {ctx.step.id!r}: {path} is not a workspace orchestrai created",
                          hint="its input must be the output of an engineer step of a run")
    return path.resolve()


def _is_marked(path: Path) -> bool:
    marker = state_dir(path)
    return marker.is_dir() and not marker.is_symlink()


def checked_entry_point(ctx: StepContext, entry_point: str) -> str:
    """The entry point as a safe relative path (it comes from a model's plan or the pipeline)."""
    try:
        return "/".join(check_path(entry_point))
    except Refused as exc:
        raise ModuleError(f"step {ctx.step.id!r}: entry point {entry_point!r} refused: {exc}",
                          hint="set options.entry_point to a file inside the workspace, e.g. main.py") from None


def plan_facts(texts: list[str]) -> tuple[str | None, list[str] | None]:
    """The entry point and run arguments a plan states ("Entry point: main.py", "Run: python main.py 100")."""
    entry, args = None, None
    for text in texts:
        if entry is None and (match := ENTRY_LINE.search(text)):
            entry = match[1].strip().rstrip(".,;")
        if args is None and (match := RUN_LINE.search(text)):
            args = _run_args(match[1], entry)
            if args is not None and entry is None:
                entry = _run_tokens(match[1])[1]
    return entry, args


def _run_tokens(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return []


def _run_args(command: str, entry: str | None) -> list[str] | None:
    tokens = _run_tokens(command)
    if len(tokens) < 2 or not re.fullmatch(r"python[0-9.]*", tokens[0]) or not tokens[1].endswith(".py"):
        return None
    if entry is not None and tokens[1] != entry:
        return None
    return tokens[2:]


def check_consent_possible(step_id: str, facts: RunFacts) -> None:
    """Before the run spends anything: a step that will execute code needs --yes, a TTY or --no-exec."""
    if not (facts.dry_run or facts.no_exec or facts.allow_execution) and facts.confirm is None:
        raise nobody_to_allow(step_id)


def nobody_to_allow(step_id: str, what: str = "") -> ExecutionNotAllowed:
    # One line that says how to allow it: progress output shows a failed step's first line only.
    return ExecutionNotAllowed(f"step {step_id!r} would run generated code{what} and nobody is here to allow it: "
                               "pass --yes or set allow_execution: true in config.yml (or --no-exec to run nothing)")


def ensure_consent(ctx: StepContext, command: str, workspace: Path) -> None:
    """Ask once per run before the first execution; without anyone to ask, fail saying how to allow it."""
    facts = ctx.facts
    if facts.allow_execution:
        return
    where = _shown(workspace)
    if facts.confirm is None:
        raise nobody_to_allow(ctx.step.id, f" (`{command}` in {where})")
    if not facts.confirm(f"Run generated code `{command}` in {where}?"):
        raise ExecutionNotAllowed(f"step {ctx.step.id!r}: you did not allow running generated code; it is in {where}",
                                  hint="rerun with --no-exec to only review the code, or --yes to run it")
    facts.allow_execution = True  # the answer holds for the rest of this run: ask once


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
