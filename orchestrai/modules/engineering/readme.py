"""create_readme: writes README.md into the workspace, from the code as it is now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...api import ModuleError
from .parser import AnswerFile
from .prompting import sections, strip_outer_fence, system_prompt
from .settings import options_of
from .workspace import Codebase, require_workspace
from .writer import ConfinedWriter

if TYPE_CHECKING:
    from ...api import StepContext

README = "README.md"


class CreateReadme:
    """The `create_readme` module: its output is the codebase facts plus `"readme": "README.md"`."""

    description = ("Writes README.md into a codebase's workspace (from an engineer, debugger or modify_codebase "
                   "step's output), describing only what the code does.")
    inputs = ("modified_codebase",)
    calls_model = True

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
        options = options_of(ctx)
        codebase = Codebase.from_inputs(ctx, inputs).with_options(options.entry_point, options.args)
        dry_run = ctx.facts.dry_run
        if not dry_run:
            require_workspace(ctx, codebase.workspace)
        messages = [system_prompt(ctx, "create_readme"),
                    sections(("request", codebase.request), ("how the code is run", codebase.command),
                             ("the codebase", None if dry_run else codebase.view(options.view_tokens)))]
        completion = await ctx.complete(messages)
        if dry_run:
            return codebase.output(view_tokens=None, readme=None)
        text = strip_outer_fence(completion.text)
        writer = ConfinedWriter(codebase.workspace, options.write_limits())
        report = writer.write([AnswerFile(README, text, 0, "answer")])
        if report.refused:
            raise ModuleError(f"step {ctx.step.id!r}: {README} was not written: {report.refused[0].reason}",
                              hint="options.max_file_kb raises the size limit")
        ctx.details.update(workspace=str(codebase.workspace), readme_bytes=len(text.encode()))
        return codebase.output(view_tokens=None, readme=README)
