"""`orchestrai plan`: a task in, a validated pipeline out, for a person to review before it runs.

`make_plan` builds the catalog (orchestrai.catalog), and runs a one-step pipeline whose module asks the
planner model (config `planner:`, default the default model) for a pipeline as structured output
against the pipeline format's JSON Schema. Each answer is judged with the full validator
(orchestrai.plan_check); its problems go back to the model, which answers again, up to MAX_ANSWERS
answers in all. The planner's run is an ordinary run: cache, budget, retries, rate limits, progress,
and a memory log holding every request, answer and problem (`details.plan_attempts`).
`write_plan` writes the plan (and the prompt modules it creates) only when it validated, never over
an existing file unless asked. The CLI command is orchestrai/cli/plancmd.py.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .api import Hook, Message, Module, ModuleError, StepContext, ToolSpec
from .catalog import catalog
from .config import Config
from .engine.options import RunOptions
from .engine.runner import RunResult, run_pipeline
from .errors import ConfigError, InputError, Location
from .modelconfig import apply_local_default, infer_provider, merge_model_configs
from .modules.base import ModuleInfo, ModuleRegistry
from .pipeline.graph import PipelineGraph
from .pipeline.spec import Pipeline, Step
from .plan_check import Candidate, Judge, display
from .plan_prompt import feedback, messages, plan_schema
from .project import Project

MAX_ANSWERS = 4  # the first answer, then up to 3 more after its problems were sent back
PLANNER_MODULE = "<planner>"  # never a module name a pipeline can write


class PlannerModule:
    """The planner run's one step: ask for a plan, judge it, send the problems back, ask again."""

    def __init__(self, conversation: list[Message], schema: dict[str, Any], judge: Callable[[str], Candidate],
                 max_answers: int = MAX_ANSWERS) -> None:
        self.conversation = conversation
        self.schema = schema
        self.judge = judge
        self.max_answers = max_answers
        self.candidates: list[Candidate] = []  # every answer, judged, in order

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> Any:
        conversation = list(self.conversation)
        attempts: list[dict[str, Any]] = ctx.details.setdefault("plan_attempts", [])
        for number in range(1, self.max_answers + 1):
            # The schema goes to the provider as a structured call's does (response_format, a forced
            # tool, a grammar); judging is ours, so that schema and validator problems go back alike.
            completion = await ctx.complete(conversation, output_schema=self.schema)
            candidate = self.judge(completion.text)
            self.candidates.append(candidate)
            attempts.append({"attempt": number, "answer": completion.text,
                             "problems": [str(problem) for problem in candidate.problems]})
            if candidate.ok:
                return {"yaml": candidate.yaml_text, "modules": [m.name for m in candidate.modules]}
            if number < self.max_answers:
                ctx.notice(f"plan answer {number}: {len(candidate.problems)} problem(s), sent back to the model")
                conversation += [Message("assistant", completion.text),
                                 Message("user", feedback(candidate.yaml_text, candidate.problems))]
        raise ModuleError(f"none of the planner's {self.max_answers} answers validated; nothing was written",
                          hint="every answer and its problems are in the memory log (details.plan_attempts)")


@dataclass(frozen=True)
class _PlannerInfo(ModuleInfo):
    @property
    def uses_llm(self) -> bool:  # its model's key is checked before the run, as a prompt's is
        return True


class _PlannerRegistry(ModuleRegistry):
    """The project's modules plus the planner step's own (under a name no pipeline can use)."""

    def __init__(self, base: ModuleRegistry, planner: PlannerModule) -> None:
        super().__init__(base.project_dirs)
        self.planner = planner

    def resolve(self, name: str) -> ModuleInfo | None:
        if name == PLANNER_MODULE:
            return _PlannerInfo(name, "builtin", "orchestrai.planner:PlannerModule", lambda: self.planner)
        return super().resolve(name)

    def instance(self, name: str) -> Module:
        return self.planner if name == PLANNER_MODULE else super().instance(name)


@dataclass
class PlanOutcome:
    """What planning gave: every answer judged, and the planner's run (status, totals, records)."""

    task: str
    target: Path
    candidates: list[Candidate]
    result: RunResult

    @property
    def plan(self) -> Candidate | None:
        """The answer that validated, or None."""
        last = self.candidates[-1] if self.candidates else None
        return last if last is not None and last.ok and self.result.status == "completed" else None

    @property
    def error(self) -> str | None:
        """Why the planner's run failed (a provider error, the budget, or answers that never validated)."""
        failed = [record.error for record in self.result.records if record.error]
        return failed[0] if failed else self.result.message


def planner_settings(config: Config) -> dict[str, Any]:
    """The planner's model settings: default_model_config < planner, provider and model resolved."""
    planner = config.file.planner
    settings = merge_model_configs(config.file.default_model_config.settings(),
                                   planner.settings() if planner is not None else None)
    apply_local_default(settings, config.uses_local_default)
    provider = infer_provider(settings)
    where = str(config.path or "config.yml")
    if provider not in config.provider_names():
        raise ConfigError(f"{where}: planner: unknown provider {provider!r}",
                          hint=f"use one of {', '.join(sorted(config.provider_names()))} in planner.provider")
    settings["provider"] = provider
    if not settings.get("model"):
        settings["model"] = config.provider_type(provider).default_model
        if settings["model"] is None:
            raise ConfigError(f"{where}: planner: provider {provider!r} needs a model",
                              hint="set planner: {model: ...} in config.yml")
    return settings


def default_target(project: Project, task: str) -> Path:
    """`pipelines/<the task's first words>.yml` in the project folder."""
    words = re.findall(r"[a-z0-9]+", task.lower())[:6]
    stem = "_".join(words)[:48].strip("_") or "plan"
    return project.config.base_dir / "pipelines" / f"{stem}.yml"


def header(task: str, target: Path) -> str:
    """The comment written above a planned pipeline."""
    lines = [line.rstrip() for line in task.strip().splitlines()] or [""]
    shown = display(target)
    return ("# Planned by `orchestrai plan` for this task:\n" + "".join(f"#   {line}\n" for line in lines) +
            f"# Review it, then: orchestrai run {shown}\n")


async def make_plan(project: Project, task: str, *, target: Path | None = None, create_modules: bool = False,
                    hooks: list[Hook] | None = None, options: RunOptions | None = None,
                    tools: Sequence[ToolSpec] | None = None, max_answers: int = MAX_ANSWERS) -> PlanOutcome:
    """Ask the planner model for a pipeline doing `task` until one validates (or `max_answers` did not)."""
    if not task.strip():
        raise InputError("the task is empty", hint='say what the pipeline should do: orchestrai plan "..."')
    target = (target or default_target(project, task)).resolve()
    judge = Judge(project, target, create_modules, header=header(task, target))
    conversation = messages(task, catalog(project, tools, exclude=[target]), target, create_modules)
    planner = PlannerModule(conversation, plan_schema(create_modules), judge, max_answers)
    step = Step(id="plan", module=PLANNER_MODULE, output_name="plan", inputs=(), supplement=None,
                model_settings=planner_settings(project.config), options={}, location=Location(display(target)),
                output_retries=0)
    # Not a file path: `run --resume` of a planner's log must not run the planned pipeline.
    graph = PipelineGraph(Pipeline("plan", "<plan>", task.strip()[:200], (step,)))
    result = await run_pipeline(graph, project.config, _PlannerRegistry(project.registry, planner),
                                options or RunOptions(), hooks)
    return PlanOutcome(task, target, planner.candidates, result)


def write_plan(plan: Candidate, target: Path, prompt_dir: Path, *, force: bool = False) -> list[Path]:
    """Write the plan and the prompts it creates; nothing (and nothing left behind) when one cannot be.

    Never over an existing file: the plan only with `force`, a created prompt never.
    """
    if not plan.ok:
        raise InputError("a plan with problems is never written")
    if target.exists() and not force:
        raise InputError(f"{display(target)} exists", hint="pass --force to replace it, or -o to choose another file")
    prompts = [(prompt_dir / f"{module.name}.md", module.file_text()) for module in plan.modules]
    for path, _ in prompts:
        if path.exists() or path.with_suffix(".txt").exists():
            raise InputError(f"{display(path)} exists; a plan never replaces a prompt",
                             hint="plan again, or give the module another name")
    written: list[Path] = []
    try:
        for path, text in prompts:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as file:  # "x": fails rather than replace a file made meanwhile
                file.write(text)
            written.append(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if force:  # a whole new file or the old one, never half of each
            temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
            temporary.write_text(plan.yaml_text, encoding="utf-8")
            os.replace(temporary, target)
        else:
            with target.open("x", encoding="utf-8") as file:  # a file that appeared meanwhile is not replaced
                file.write(plan.yaml_text)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return [target, *written]
