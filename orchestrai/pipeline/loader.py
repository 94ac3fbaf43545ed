"""Load a pipeline file and find everything wrong with it, all at once, as `path:line` problems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..api import ChecksSteps
from ..config import Config
from ..engine.budget import unpriced_models
from ..errors import ConfigError, Location, OrchestraiError, Problem, ValidationFailed
from ..modelconfig import apply_local_default, infer_provider, merge_model_configs, misspelled_keys
from ..modules.base import ModuleInfo, ModuleRegistry
from ..schema_errors import problems_from_validation_error
from ..yamlsrc import YamlDoc, load_yaml
from .graph import PipelineGraph, find_cycle, wire_steps
from .output_schema import SchemaReader, declared_schema
from .spec import Pipeline, PipelineHeader, Step, StepSpec


@dataclass
class _Checker:
    """Collects the problems of one pipeline file as it is read."""

    doc: YamlDoc
    config: Config
    registry: ModuleRegistry

    def __post_init__(self) -> None:
        self.problems: list[Problem] = []
        # Asked once per file, not per step: each reads the environment or builds a set (~0.1 s of a
        # 10,000-step validation).
        self.local_default = self.config.uses_local_default
        self.known_providers = self.config.provider_names()
        self.schemas = SchemaReader(self.doc, self.config.base_dir)

    def location(self, loc: tuple[Any, ...]) -> Location:
        return Location(self.doc.path, self.doc.line_of(loc))

    def add(self, loc: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        self.problems.append(self.doc.problem(loc, message, hint))


def load_pipeline(path: str | Path | None, config: Config, registry: ModuleRegistry) -> PipelineGraph:
    """The pipeline's graph (default: config's `pipeline:`), or ValidationFailed listing every problem."""
    if path is None:
        if not config.file.pipeline:
            raise ValidationFailed([Problem(str(config.path or "config.yml"), None, "no pipeline given",
                                            "pass a pipeline file, or set pipeline: in config.yml")])
        path = config.base_dir / config.file.pipeline
    graph, problems = check_pipeline(path, config, registry)
    if problems:
        raise ValidationFailed(problems)
    assert graph is not None
    return graph


def check_pipeline(path: str | Path, config: Config,
                   registry: ModuleRegistry) -> tuple[PipelineGraph | None, list[Problem]]:
    """Read and validate a pipeline; return its graph (when valid) and every problem found."""
    path = Path(path)
    doc, problems = load_yaml(path)
    if doc is None or problems:
        return None, problems
    check = _Checker(doc, config, registry)
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("pipeline"), list) or not data["pipeline"]:
        check.add((), "a pipeline file needs a top-level `pipeline:` list of steps",
                  "see pipelines/planning.yml for an example")
        return None, check.problems
    header = _check_header(check, data)
    steps, broken_outputs = _check_steps(check, data["pipeline"], header)
    _check_references(check, steps, broken_outputs)
    budget = (header.budget_usd if header else None) or config.file.budget_usd
    if budget is not None:
        for step in steps:
            for message, hint in unpriced_models(step, config, registry):
                check.add(("pipeline", step.index), message, hint)
    successors = wire_steps(tuple(steps))
    cycle = find_cycle(successors)
    if cycle:
        by_id = {s.id: s for s in steps}
        check.problems.append(Problem.at(by_id[cycle[0]].location, "steps form a cycle: " +
                                         " -> ".join([*cycle, cycle[0]]),
                                         "a step cannot need, directly or not, its own output"))
    if check.problems:
        return None, sorted(check.problems, key=lambda p: (p.path, p.line or 0))
    name = (header.name if header else None) or path.stem
    pipeline = Pipeline(name, doc.path, header.description if header else None, tuple(steps),
                        budget_usd=header.budget_usd if header else None)
    return PipelineGraph(pipeline, successors), []


def _check_header(check: _Checker, data: dict[str, Any]) -> PipelineHeader | None:
    try:
        return PipelineHeader.model_validate({k: v for k, v in data.items() if k != "pipeline"})
    except ValidationError as exc:
        check.problems += problems_from_validation_error(exc, check.doc, what="pipeline", model=PipelineHeader)
        return None


def _check_steps(check: _Checker, items: list[Any], header: PipelineHeader | None) -> tuple[list[Step], set[str]]:
    """Validate each step alone, so one bad step does not hide the problems of the others."""
    defaults = header.defaults.settings() if header and header.defaults else None
    base = check.config.file.default_model_config.settings()
    steps: list[Step] = []
    broken_outputs: set[str] = set()  # outputs of steps that failed the schema: not "missing" elsewhere
    for index, item in enumerate(items):
        loc = ("pipeline", index)
        if not isinstance(item, dict):
            check.add(loc, f"step {index + 1} must be a mapping with module, inputs and output_name")
            continue
        try:
            spec = StepSpec.model_validate(item)
        except ValidationError as exc:
            check.problems += problems_from_validation_error(exc, check.doc, what="step", prefix=loc, model=StepSpec)
            if isinstance(item.get("output_name"), str):
                broken_outputs.add(item["output_name"])
            continue
        if spec.settings is not None:
            for key, meant in misspelled_keys(spec.settings):
                check.add((*loc, "model_config", key), f"unknown model_config key {key!r}", f"did you mean {meant!r}?")
        settings = merge_model_configs(base, defaults, spec.settings.settings() if spec.settings else None)
        step_id = spec.id or spec.output_name
        inferred = _resolve_model(check, loc, step_id, settings)
        schema = None
        if spec.output_schema is not None:
            schema, problems = check.schemas.read(loc, step_id, spec.output_schema)
            check.problems += problems
        steps.append(Step(id=step_id, module=spec.module, output_name=spec.output_name, inputs=tuple(spec.inputs),
                          supplement=spec.supplement, model_settings=settings, options=spec.options,
                          location=check.location(loc), index=index, provider_inferred=inferred,
                          optional_inputs=tuple(spec.optional_inputs), critical=spec.critical, priority=spec.priority,
                          retry=spec.retry, timeout_s=spec.timeout_s, max_cost_usd=spec.max_cost_usd, cache=spec.cache,
                          fallbacks=_resolve_fallbacks(check, loc, step_id, spec),
                          output_schema=schema, output_retries=spec.output_retries))
    return steps, broken_outputs


def _resolve_fallbacks(check: _Checker, loc: tuple[Any, ...], step_id: str,
                       spec: StepSpec) -> tuple[dict[str, str], ...]:
    """Each fallback as {provider, model}: a plain name infers its provider like any model does."""
    resolved = []
    known = check.known_providers
    for position, entry in enumerate(spec.fallback_models):
        model, provider = (entry, None) if isinstance(entry, str) else (entry.model, entry.provider)
        provider = provider or infer_provider({"model": model})
        if provider not in known:
            check.add((*loc, "fallback_models", position),
                      f"step {step_id!r}: fallback uses unknown provider {provider!r}",
                      f"use one of {', '.join(sorted(known))}")
        resolved.append({"provider": provider, "model": model})
    return tuple(resolved)


def _resolve_model(check: _Checker, loc: tuple[Any, ...], step_id: str, settings: dict[str, Any]) -> bool:
    """Fill in the provider and default model, reporting an unknown provider or a missing model.

    Returns whether the provider was inferred from the model's name (no provider set anywhere).
    """
    apply_local_default(settings, check.local_default)
    inferred = not settings.get("provider")
    provider = infer_provider(settings)
    known = check.known_providers
    where = (*loc, "model_config", "provider") if (*loc, "model_config", "provider") in check.doc.lines else loc
    if provider not in known:
        check.add(where, f"step {step_id!r}: unknown provider {provider!r}",
                  f"use one of {', '.join(sorted(known))}, or add it under providers: in config.yml")
        return inferred
    settings["provider"] = provider
    if not settings.get("model"):
        try:
            model = check.config.provider_type(provider).default_model
        except ConfigError as exc:
            check.add(where, f"step {step_id!r}: {exc.message}", exc.hint)
            return inferred
        if model is None:
            check.add(where, f"step {step_id!r}: provider {provider!r} needs a model",
                      "set model_config.model on the step, or default_model_config.model in config.yml")
            return inferred
        settings["model"] = model
    return inferred


def _check_references(check: _Checker, steps: list[Step], broken_outputs: set[str]) -> None:
    """Duplicates, unknown modules, inputs nobody produces, and prompt templates."""
    first_output: dict[str, Step] = {}
    first_id: dict[str, Step] = {}
    for step in steps:
        loc = ("pipeline", step.index)
        if step.output_name in first_output:
            other = first_output[step.output_name]
            check.add((*loc, "output_name"), f"two steps produce {step.output_name!r} (also step {other.id!r} at line "
                      f"{other.location.line})", "give each step a distinct output_name")
        elif step.id in first_id:
            check.add(loc, f"two steps have the id {step.id!r}", "give each step a distinct id")
        first_output.setdefault(step.output_name, step)
        first_id.setdefault(step.id, step)
    # Once per module name, not per step: resolving looks at the file system, and a prompt's
    # template is parsed once however many steps use it.
    infos: dict[str, ModuleInfo | None] = {}
    loaded: dict[str, _Loaded | None] = {}
    for number, step in enumerate(steps):
        loc = ("pipeline", step.index)
        if step.module not in infos:
            infos[step.module] = check.registry.resolve(step.module)
        info = infos[step.module]
        if info is None:
            check.add((*loc, "module"), check.registry.unknown_message(step.module, step.id),
                      check.registry.unknown_hint(step.module))
        for key, names in (("inputs", step.inputs), ("optional_inputs", step.optional_inputs)):
            for position, name in enumerate(names):
                if name not in first_output and name not in broken_outputs:
                    check.add((*loc, key, position), f"step {step.id!r} needs {name!r}, which no step produces",
                              f"add a step with output_name: {name}, or fix the spelling")
        if info is None:
            continue
        if step.module not in loaded:  # the module's own check and schema, found once per module name
            loaded[step.module] = _load_module(check, loc, step)
        module = loaded[step.module]
        if module is None:
            continue
        if step.output_schema is None and module.schema is not None:
            steps[number] = step = replace(step, output_schema=module.schema)
        if module.check is not None:
            check.problems += module.check(step)


StepCheck = Callable[[Step], list[Problem]]


@dataclass
class _Loaded:
    """What validation needs of a module: its `check`, and the output_schema it declares (when valid)."""

    check: StepCheck | None
    schema: dict[str, Any] | None


def _load_module(check: _Checker, loc: tuple[Any, ...], step: Step) -> _Loaded | None:
    """Load the step's module; a module that fails to load, or declares an invalid schema, is reported
    here, at the first step that uses it. isinstance against a runtime protocol costs microseconds:
    asked once per module, not once per step.
    """
    try:
        module = check.registry.instance(step.module)
    except OrchestraiError as exc:
        check.add((*loc, "module"), f"step {step.id!r}: {exc.message}", exc.hint)
        return None
    except Exception as exc:  # noqa: BLE001 - a project's module that fails to import is the user's to fix
        check.add((*loc, "module"), f"step {step.id!r}: module {step.module!r} failed to load: "
                  f"{type(exc).__name__}: {exc}", "fix the module's code")
        return None
    schema = None
    if getattr(module, "output_schema", None) is not None:  # a Python module's own, for steps that set none
        with_schema, problems = declared_schema(step, module)
        check.problems += problems
        schema = with_schema.output_schema
    return _Loaded(module.check if isinstance(module, ChecksSteps) else None, schema)
