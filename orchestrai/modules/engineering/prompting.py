"""The messages the engineering modules send: a system prompt file, and a user message built from facts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...api import Message, ModuleError
from ..chameleon import ChameleonModule
from .parser import ParsedAnswer
from .view import fenced
from .writer import WriteReport

if TYPE_CHECKING:
    from ...api import StepContext
    from .sandbox import Execution

TRACEBACK_FILE = re.compile(r'File "([^"]+)", line \d+|^([\w./-]+\.py):\d+', re.MULTILINE)
OUTPUT_CHARS = 6000


def system_prompt(ctx: StepContext, name: str, **variables: Any) -> Message:
    """`system_prompts/<name>.md` rendered like a chameleon prompt, with `variables` besides the supplement."""
    path = ctx.facts.prompt_path(name)
    if path is None:
        raise ModuleError(f"step {ctx.step.id!r}: the system prompt {name}.md was not found",
                          hint=f"restore system_prompts/{name}.md (the package ships one)")
    text = ChameleonModule(name, path).render(variables, supplement=ctx.step.supplement, step_id=ctx.step.id)
    return Message("system", text)


def sections(*parts: tuple[str, str | None]) -> Message:
    """A user message of `## heading` sections (empty ones left out), as chameleon modules write them."""
    return Message("user", "\n\n".join(f"## {title}\n{body}" for title, body in parts if body))


def run_report(execution: Execution, reason: str | None, redact: Any) -> str:
    """What happened when the code ran, for the model: the command, how it ended, the end of its output."""
    lines = [execution.summary() + "."]
    if reason:
        lines.append(f"pip's reason: {reason}")
    output = redact(execution.output[-OUTPUT_CHARS:]) if execution.output.strip() else "(no output)"
    return "\n".join(lines) + "\n\nOutput (the end of it):\n" + fenced(output, "text")


def answer_feedback(parsed: ParsedAnswer, report: WriteReport) -> str | None:
    """What went wrong with the model's last answer (refused files, ignored blocks), for its next try."""
    problems = [str(r) for r in [*parsed.refused, *report.refused]] + parsed.notes
    return "\n".join(f"- {p}" for p in problems) if problems else None


def first_problem(problems: str) -> str:
    """The first of a list of problems, and how many more there are, for a one-line error."""
    lines = [line.removeprefix("- ") for line in problems.splitlines() if line.strip()]
    more = f" (and {len(lines) - 1} more; see the memory log)" if len(lines) > 1 else ""
    return (lines[0] if lines else "no problem given") + more


def files_in_output(output: str, workspace: Path, known: list[str]) -> tuple[str, ...]:
    """Workspace files a traceback or test report names, most recent last (they are shown in full)."""
    found: list[str] = []
    root = str(workspace.resolve())
    for match in TRACEBACK_FILE.finditer(output):
        name = match[1] or match[2]
        if name.startswith(root + "/"):
            name = name[len(root) + 1:]
        if name in known and name not in found:
            found.append(name)
    return tuple(reversed(found))


def strip_outer_fence(text: str) -> str:
    """An answer that is one fenced Markdown block, unwrapped (a habit of models asked for a document)."""
    lines = text.strip().splitlines()
    first = re.match(r"^(`{3,}|~{3,})\s*(?:markdown|md)?\s*$", lines[0], re.IGNORECASE) if lines else None
    last = lines[-1].strip() if lines else ""
    if first and len(lines) >= 2 and set(last) == {first[1][0]} and len(last) >= len(first[1]):
        return "\n".join(lines[1:-1]).strip() + "\n"
    return text.strip() + "\n"
