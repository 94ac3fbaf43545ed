"""A variant: the pipeline to run, with its prompt texts and model settings swapped in.

Prompts are swapped by a folder searched before the project's (`<overlay>/system_prompts/<module>.md`),
so the pipeline is validated and run exactly as with the project's own prompt; model settings are
merged into the loaded steps (top-level steps: a loop body or a sub-pipeline keeps its own).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import OrchestraiError, Problem
from ..modelconfig import infer_provider
from ..modules.base import ModuleRegistry
from ..pipeline.graph import PipelineGraph
from ..pipeline.loader import check_pipeline
from ..pipeline.spec import Step
from ..project import Project, project_dirs
from ..yamlsrc import YamlDoc
from .spec import EvalSpec, PromptText, VariantSpec

Loc = tuple[Any, ...]


@dataclass
class Variant:
    name: str
    graph: PipelineGraph
    registry: ModuleRegistry
    threshold: float
    pipeline_path: Path


def build_variant(spec: VariantSpec, locs: list[Loc], doc: YamlDoc, eval_path: Path, eval_spec: EvalSpec,
                  project: Project, overlay: Path) -> tuple[Variant | None, list[Problem]]:
    """The variant ready to run, or what is wrong with it (located at the variant's lines in the eval file)."""
    where = _locator(spec, locs, doc)
    raw = spec.pipeline or eval_spec.pipeline
    assert raw is not None  # load_eval checked that some pipeline is named
    path = eval_path.parent / raw
    if not path.is_file():
        return None, [where("pipeline", f"variant {spec.name!r}: pipeline file {raw!r} not found",
                            f"paths are relative to {eval_path.parent}")]
    problems = _write_prompts(spec, where, eval_path.parent, overlay)
    if problems:
        return None, problems
    config = project.config
    registry = ModuleRegistry([overlay, *project_dirs(config)]) if spec.prompts else project.registry
    graph, found = check_pipeline(path, config, registry)
    if graph is None:
        return None, [_relocate(p, overlay, spec) for p in found]
    problems = _check_prompt_modules(spec, where, graph, registry)
    steps = _apply_settings(spec, where, graph, registry, config, problems)
    if problems:
        return None, problems
    pipeline = dataclasses.replace(graph.pipeline, steps=steps)
    threshold = spec.threshold if spec.threshold is not None else eval_spec.threshold
    return Variant(spec.name, PipelineGraph(pipeline, graph.successors), registry, threshold, path), []


def _locator(spec: VariantSpec, locs: list[Loc], doc: YamlDoc) -> Any:
    """Problems at the line of the key inside the (last) variant entry that has it."""

    def where(key: str | tuple[Any, ...], message: str, hint: str | None = None) -> Problem:
        keys = key if isinstance(key, tuple) else (key,)
        for loc in reversed(locs):
            if (*loc, *keys) in doc.lines:
                return doc.problem((*loc, *keys), message, hint)
        return doc.problem(locs[-1], message, hint)

    return where


def _write_prompts(spec: VariantSpec, where: Any, base: Path, overlay: Path) -> list[Problem]:
    problems = []
    folder = overlay / "system_prompts"
    for module, source in spec.prompts.items():
        if isinstance(source, PromptText):
            text = source.text
        else:
            file = base / source
            if not file.is_file():
                problems.append(where(("prompts", module), f"variant {spec.name!r}: prompt file {source!r} not found",
                                      f"paths are relative to {base}"))
                continue
            text = file.read_text(encoding="utf-8")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{module}.md").write_text(text, encoding="utf-8")
    return problems


def _relocate(problem: Problem, overlay: Path, spec: VariantSpec) -> Problem:
    """A problem in a swapped-in prompt names the variant's prompt, not the scratch copy."""
    if str(overlay) not in problem.path:
        return problem
    module = Path(problem.path).stem
    source = spec.prompts.get(module)
    shown = source if isinstance(source, str) else f"variant {spec.name!r} prompts.{module} (inline text)"
    return dataclasses.replace(problem, path=shown)


def _check_prompt_modules(spec: VariantSpec, where: Any, graph: PipelineGraph,
                          registry: ModuleRegistry) -> list[Problem]:
    problems = []
    used = {step.module for step in graph.pipeline.steps}
    for module in spec.prompts:
        info = registry.resolve(module)
        if module not in used:
            problems.append(where(("prompts", module), f"variant {spec.name!r}: no step of "
                                  f"{graph.pipeline.path} uses module {module!r}",
                                  f"the pipeline's modules: {', '.join(sorted(used))}"))
        elif info is None or info.kind != "prompt":
            problems.append(where(("prompts", module), f"variant {spec.name!r}: {module!r} is not a prompt module",
                                  "only prompt files (system_prompts/*.md) can be swapped"))
    for step_id in spec.steps:
        if step_id not in graph.steps:
            problems.append(where(("steps", step_id), f"variant {spec.name!r}: the pipeline has no step {step_id!r}",
                                  f"its steps: {', '.join(graph.steps)}"))
    return problems


def _default_model(provider: str, config: Config) -> str | None:
    try:
        return config.provider_type(provider).default_model
    except OrchestraiError:
        return None


def _apply_settings(spec: VariantSpec, where: Any, graph: PipelineGraph, registry: ModuleRegistry,
                    config: Config, problems: list[Problem]) -> tuple[Step, ...]:
    providers = config.provider_names()
    steps = []
    defaults: dict[str, str | None] = {}
    for step in graph.pipeline.steps:
        override = {**spec.settings, **(spec.steps[step.id].settings if step.id in spec.steps else {})}
        info = registry.resolve(step.module)
        if not override or info is None or not info.uses_llm:
            steps.append(step)
            continue
        settings = {**step.model_settings, **override}
        if "model" in override and "provider" not in override:  # a new model's provider is its own
            settings.pop("provider", None)
        provider = infer_provider(settings)
        if provider not in providers:
            key = ("steps", step.id, "model_config") if step.id in spec.steps else "model_config"
            problems.append(where(key, f"variant {spec.name!r}: step {step.id!r}: unknown provider {provider!r}",
                                  f"use one of {', '.join(sorted(providers))}, or add it under providers: "
                                  "in config.yml"))
        elif "provider" in override and "model" not in override:  # another provider: its own default model
            if provider not in defaults:
                defaults[provider] = _default_model(provider, config)
            settings["model"] = defaults[provider] or settings.get("model")
        settings["provider"] = provider
        steps.append(dataclasses.replace(step, model_settings=settings, provider_inferred=False))
    return tuple(steps)
