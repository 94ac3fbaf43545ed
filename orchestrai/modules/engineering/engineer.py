"""engineer: asks the model for every file of the planned codebase and writes them into the run's workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...api import Message, ModuleError
from ..chameleon import user_message
from .parser import ParsedAnswer, parse_answer
from .prompting import answer_feedback, first_problem, system_prompt
from .settings import options_of
from .workspace import (
    DEFAULT_ENTRY_POINT,
    Codebase,
    checked_entry_point,
    plan_facts,
    prepare_workspace,
    resolve_workspace,
)
from .writer import ConfinedWriter, WriteReport

if TYPE_CHECKING:
    from ...api import StepContext

ATTEMPTS = 2  # a second request only when the first answer gave no file that could be written
ECHOED_CHARS = 2000  # how much of a useless answer is shown back to the model


class Engineer:
    """The `engineer` module: plan in, workspace with files out (see workspace.py for the output's shape)."""

    description = ("Writes a complete small Python codebase into a fresh sandboxed workspace from a request and a "
                   "code plan (code_planner's output). Output: the codebase (workspace, entry_point, args, files), "
                   "the input of debugger, modify_codebase and create_readme.")
    inputs = ("request", "code_plan")
    calls_model = True

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
        options = options_of(ctx)
        texts = [value for value in inputs.values() if isinstance(value, str)]
        plan_entry, plan_args = plan_facts(texts)
        entry = checked_entry_point(ctx, options.entry_point or plan_entry or DEFAULT_ENTRY_POINT)
        args = options.args if options.args is not None else plan_args or []
        request = inputs["request"] if isinstance(inputs.get("request"), str) else (texts[0] if texts else "")
        codebase = Codebase(resolve_workspace(ctx, options.workspace), entry, list(args), request)
        messages = [system_prompt(ctx, "engineer", entry_point=entry, max_files=options.max_files),
                    Message("user", user_message(inputs, ctx.step.supplement))]
        details = ctx.details
        details["workspace"] = str(codebase.workspace)
        if ctx.facts.dry_run:
            await ctx.complete(messages)
            details["note"] = "dry run: nothing was written"
            return codebase.output(view_tokens=None, dry_run=True)
        prepare_workspace(codebase.workspace)  # before the model call: a wrong folder costs nothing
        writer = ConfinedWriter(codebase.workspace, options.write_limits())
        parsed, report = await self._write_answer(ctx, messages, writer)
        if not (report.written or report.unchanged):
            problems = answer_feedback(parsed, report) or "- the answer held no labelled code block"
            raise ModuleError(f"step {ctx.step.id!r}: no file could be written from the model's answer: "
                              f"{first_problem(problems)}",
                              hint="the answer is in the memory log; the system prompt engineer.md gives the format")
        return codebase.output(view_tokens=options.view_tokens)

    async def _write_answer(self, ctx: StepContext, messages: list[Message],
                            writer: ConfinedWriter) -> tuple[ParsedAnswer, WriteReport]:
        details = ctx.details
        for attempt in range(1, ATTEMPTS + 1):
            completion = await ctx.complete(messages)
            parsed = parse_answer(completion.text)
            report = writer.write(parsed.files)
            details.update(answers=attempt, files_written=report.written + report.unchanged,
                           refused=[str(r) for r in [*parsed.refused, *report.refused]], notes=parsed.notes)
            if report.written or report.unchanged:
                break
            shown = completion.text[:ECHOED_CHARS] + ("\n[...]" if len(completion.text) > ECHOED_CHARS else "")
            problems = answer_feedback(parsed, report) or "- it held no labelled code block"
            messages = [*messages, Message("assistant", shown),
                        Message("user", f"No file could be written from your answer:\n{problems}\n\n"
                                        "Answer again with every file, in the format the system prompt gives.")]
        return parsed, report
