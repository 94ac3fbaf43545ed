"""debugger and modify_codebase: make the code run, and change it on request (then make it run again)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...api import ModuleError
from .loop import debug_codebase, review_codebase
from .parser import parse_answer
from .prompting import answer_feedback, first_problem, sections, system_prompt
from .settings import EngineeringOptions, options_of
from .workspace import Codebase, check_consent_possible, checked_entry_point, require_workspace
from .writer import ConfinedWriter

if TYPE_CHECKING:
    from ...api import RunFacts, Step, StepContext


def _codebase(ctx: StepContext, inputs: dict[str, Any], options: EngineeringOptions) -> Codebase:
    codebase = Codebase.from_inputs(ctx, inputs).with_options(options.entry_point, options.args)
    checked_entry_point(ctx, codebase.entry_point)
    ctx.details["workspace"] = str(codebase.workspace)
    if not ctx.facts.dry_run:
        require_workspace(ctx, codebase.workspace)
    return codebase


class _RunsCode:
    """Modules that execute generated code refuse before the run spends anything if nobody can allow it."""

    calls_model = True

    def preflight(self, step: Step, facts: RunFacts) -> None:
        check_consent_possible(step.id, facts)


class Debugger(_RunsCode):
    """The `debugger` module: runs the entry point in the sandbox and has the model fix it until it runs."""

    description = ("Runs a codebase (an engineer step's output) in its sandbox and has the model fix the errors "
                   "until it runs, up to max_iterations. Executing code needs the user's consent. Output: the "
                   "working codebase.")
    inputs = ("request", "code")

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
        options = options_of(ctx)
        codebase = _codebase(ctx, inputs, options)
        run = ctx.facts
        if run.dry_run or run.no_exec:
            outcome = await review_codebase(ctx, codebase, options, write=not run.dry_run)
        else:
            outcome = await debug_codebase(ctx, codebase, options)
        return codebase.output(view_tokens=options.view_tokens, outcome=outcome,
                               iterations=len(ctx.details.get("iterations", [])))


class ModifyCodebase(_RunsCode):
    """The `modify_codebase` module: applies a change request (--input change=... or the supplement), then debugs."""

    description = ("Changes a working codebase as the run input `change` or the step's supplement asks, then runs "
                   "and fixes it like debugger; passes it on unchanged when no change is asked for.")
    inputs = ("working_codebase",)

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
        options = options_of(ctx)
        codebase = _codebase(ctx, inputs, options)
        details = ctx.details
        change = ctx.run_inputs.get("change") or ctx.step.supplement
        if not change:
            details.update(outcome="unchanged", note='no change requested (--input change="..." or a supplement)')
            return codebase.output(view_tokens=options.view_tokens, outcome="unchanged", changed=[])
        details["change"] = str(change)
        dry_run = ctx.facts.dry_run
        messages = [system_prompt(ctx, "modify_codebase"),
                    sections(("request", codebase.request), ("change", str(change)),
                             ("how the code is run", codebase.command),
                             ("the codebase", None if dry_run else codebase.view(options.view_tokens)))]
        completion = await ctx.complete(messages)
        if dry_run:
            details.update(outcome="dry_run", note="dry run: nothing was written or executed")
            return codebase.output(view_tokens=None, outcome="dry_run", changed=[])
        parsed = parse_answer(completion.text)
        report = ConfinedWriter(codebase.workspace, options.write_limits()).write(parsed.files)
        details["changed"] = report.written
        if problems := answer_feedback(parsed, report):
            details["problems"] = problems.splitlines()
        if not report.written:
            raise ModuleError(f"step {ctx.step.id!r}: the answer to the change request changed no file"
                              + (f": {first_problem(problems)}" if problems else ""),
                              hint="the answer is in the memory log; modify_codebase.md gives the format")
        if ctx.facts.no_exec:
            details.update(outcome="not_run", note="nothing was executed (--no-exec)")
            outcome = "not_run"
        else:
            outcome = await debug_codebase(ctx, codebase, options)
        return codebase.output(view_tokens=options.view_tokens, outcome=outcome, changed=report.written)
