"""start_module: hands the pipeline the input given on the command line, stdin or a prompt."""

from __future__ import annotations

from typing import Any

from ..api import InputError, StepContext


class StartModule:
    """Outputs the run input named like the step's output_name (e.g. `--input request="..."`)."""

    description = ("The pipeline's input: outputs the run input named like the step's output_name "
                   "(--input NAME=..., piped stdin, or asked on a terminal). Needs no inputs and calls no model.")
    inputs: tuple[str, ...] = ()
    calls_model = False

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> Any:
        name = ctx.step.output_name
        if name not in ctx.run_inputs:
            raise InputError(f"step {ctx.step.id!r} needs the run input {name!r}",
                             hint=f'pass --input {name}="..." or --input-file {name}=PATH')
        return ctx.run_inputs[name]
