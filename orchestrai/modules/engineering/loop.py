"""The debug loop: run the code, show the model what broke, apply its fix, run again.

One iteration is one run of the code (pip first when requirements.txt is new or changed, then the
entry point, then pytest when asked). A failed run that is not the last is followed by one fix request;
its files go through the confined writer. Every iteration is appended to the step's
`details["iterations"]` (command, exit code, output tail, files changed, tokens), so the memory log
shows the whole story; `details["outcome"]` ends as "fixed" or "gave_up" (a failed step whose
workspace stays for inspection).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...api import ModuleError
from ...modelconfig import infer_provider
from .parser import ParsedAnswer, parse_answer
from .prompting import answer_feedback, files_in_output, run_report, sections, system_prompt
from .sandbox import Execution, run_sandboxed
from .settings import EngineeringOptions
from .venv import WorkspaceVenv, pip_reason
from .view import list_files
from .workspace import Codebase, ensure_consent
from .writer import ConfinedWriter, WriteReport

if TYPE_CHECKING:
    from ...api import Completion, StepContext

TAIL_CHARS = 2000


async def off_loop(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run blocking work in a thread; if the step is cancelled (Ctrl-C), tell it to stop and kill its program."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(fn, *args, stop=stop, **kwargs)
    except asyncio.CancelledError:
        stop.set()
        raise


@dataclass
class Runner:
    """Runs one codebase in its workspace venv under the step's limits."""

    codebase: Codebase
    options: EngineeringOptions
    secrets: list[str]

    def __post_init__(self) -> None:
        self.venv = WorkspaceVenv(self.codebase.workspace, self.secrets, self.options.pip_args,
                                  self.options.pip_limits())

    async def run_once(self) -> tuple[Execution, str | None]:
        """Install requirements if they changed, run the entry point, then the tests; the first failure ends it."""
        await asyncio.to_thread(self.venv.ensure)
        if self.venv.requirements_changed():
            installed = await off_loop(self.venv.install_requirements)
            if not installed.ok:
                return installed, pip_reason(installed.output)
        result = await self._run([self.codebase.entry_point, *self.codebase.args], self.codebase.command)
        if result.ok and self.options.run_tests and self._has_tests():
            return await self._run_tests()
        return result, None

    async def _run(self, argv: list[str], shown_as: str) -> Execution:
        execution: Execution = await off_loop(run_sandboxed, [str(self.venv.python), *argv],
                                              cwd=self.codebase.workspace, env=self.venv.environment(),
                                              limits=self.options.limits(), shown_as=shown_as)
        return execution

    async def _run_tests(self) -> tuple[Execution, str | None]:
        probe = await self._run(["-c", "import pytest"], "python -c 'import pytest'")
        if not probe.ok:
            installed = await off_loop(self.venv.install_packages, ["pytest"])
            if not installed.ok:
                return installed, pip_reason(installed.output)
        return await self._run(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"], "python -m pytest -q -x"), None

    def _has_tests(self) -> bool:
        return any(p.startswith("tests/") or p.rsplit("/", 1)[-1].startswith("test_")
                   for p in list_files(self.codebase.workspace) if p.endswith(".py"))


async def debug_codebase(ctx: StepContext, codebase: Codebase, options: EngineeringOptions) -> str:
    """Run and fix until the code runs ("fixed"); raise a ModuleError after max_iterations ("gave_up")."""
    details = ctx.details
    iterations: list[dict[str, Any]] = details.setdefault("iterations", [])
    ensure_consent(ctx, codebase.command, codebase.workspace)
    runner = Runner(codebase, options, list(ctx.facts.secrets))
    feedback: str | None = None
    for number in range(1, options.max_iterations + 1):
        execution, reason = await runner.run_once()
        entry = _iteration(number, execution, reason)
        iterations.append(entry)
        if execution.ok:
            details["outcome"] = "fixed"
            return "fixed"
        if number == options.max_iterations:
            break
        completion, parsed, report = await _ask_for_fix(ctx, codebase, options, execution, reason, feedback,
                                                        failed_fixes=number - 1)
        _record_fix(entry, completion, parsed, report)
        feedback = answer_feedback(parsed, report) or (None if report.written else "- your answer changed no file")
    details["outcome"] = "gave_up"
    last = iterations[-1]
    raise ModuleError(f"step {ctx.step.id!r} gave up after {len(iterations)} iterations: the code still fails "
                      f"({last['summary']}); the workspace is kept for inspection: {codebase.workspace}",
                      hint="each iteration is in the memory log (details.iterations); "
                           "options.max_iterations allows more tries")


def _iteration(number: int, execution: Execution, reason: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"iteration": number, "command": execution.command, "exit_code": execution.exit_code,
                             "timed_out": execution.timed_out, "limit": execution.limit_hit,
                             "duration_s": execution.duration_s, "summary": execution.summary(),
                             "output_tail": execution.tail(TAIL_CHARS), "files_changed": [],
                             "tokens": {"input": 0, "output": 0}}
    if reason:
        entry["reason"] = reason
    return entry


async def _ask_for_fix(ctx: StepContext, codebase: Codebase, options: EngineeringOptions, execution: Execution,
                       reason: str | None, feedback: str | None, *,
                       failed_fixes: int) -> tuple[Completion, ParsedAnswer, WriteReport]:
    """One fix request: the failure, the files it names in full, the rest condensed; its files are written."""
    focus = files_in_output(execution.output, codebase.workspace, list_files(codebase.workspace))
    messages = [system_prompt(ctx, "debugger", mode="fix"),
                sections(("request", codebase.request), ("how the code is run", codebase.command),
                         ("what happened", run_report(execution, reason, ctx.redact)),
                         ("problems with your previous answer", feedback),
                         ("the codebase", codebase.view(options.view_tokens, focus)))]
    completion = await ctx.complete(messages, **fallback_settings(ctx, options, failed_fixes=failed_fixes))
    parsed = parse_answer(completion.text)
    return completion, parsed, ConfinedWriter(codebase.workspace, options.write_limits()).write(parsed.files)


def _record_fix(entry: dict[str, Any], completion: Completion, parsed: ParsedAnswer, report: WriteReport) -> None:
    entry.update(files_changed=report.written, model=completion.model,
                 tokens={"input": completion.usage.input_tokens, "output": completion.usage.output_tokens})
    if refused := [str(r) for r in [*parsed.refused, *report.refused]]:
        entry["refused"] = refused
    if parsed.notes:
        entry["notes"] = parsed.notes


def fallback_settings(ctx: StepContext, options: EngineeringOptions, *, failed_fixes: int) -> dict[str, Any]:
    """Model overrides once `fallback_after` fix requests have failed (none before, or without a fallback_model)."""
    if not options.fallback_model or failed_fixes < options.fallback_after:
        return {}
    provider = options.fallback_provider
    if provider is None:
        # A hosted model's name says which API serves it; a self-hosted endpoint keeps serving its own models.
        own = ctx.step.model_settings["provider"]
        provider = infer_provider({"model": options.fallback_model}) if own in ("openai", "anthropic") else own
    if provider not in ctx.facts.provider_names:
        raise ModuleError(f"step {ctx.step.id!r}: fallback provider {provider!r} is not configured",
                          hint="set options.fallback_provider to a provider in config.yml")
    return {"model": options.fallback_model, "provider": provider}


async def review_codebase(ctx: StepContext, codebase: Codebase, options: EngineeringOptions, *, write: bool) -> str:
    """--no-exec (or a dry run): the model reviews the code without running it; its fixes are written if `write`."""
    messages = [system_prompt(ctx, "debugger", mode="review"),
                sections(("request", codebase.request), ("how the code is run", codebase.command),
                         ("the codebase", codebase.view(options.view_tokens) if codebase.workspace.is_dir() else None))]
    completion = await ctx.complete(messages)
    parsed = parse_answer(completion.text)
    details = ctx.details
    if write:
        report = ConfinedWriter(codebase.workspace, options.write_limits()).write(parsed.files)
        details["files_changed"] = report.written
        if refused := [str(r) for r in [*parsed.refused, *report.refused]]:
            details["refused"] = refused
    details["outcome"] = "reviewed"
    details["note"] = "nothing was executed (--no-exec)" if write else "dry run: nothing was written or executed"
    return "reviewed"
