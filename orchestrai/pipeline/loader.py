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
from .decisions import Names, Parsed, loop_step, resolve
from .graph import PipelineGraph, find_cycle, start_inputs, wire_steps
from .output_schema import SchemaReader, declared_schema, locate_file
from .spec import (
    LOOP_MODULE,
    PIPELINE_MODULE,
    LoopEntry,
    Pipeline,
    PipelineHeader,
    Step,
    StepSpec,
    SubPipeline,
    module_steps,
)
from .tooluse import ToolResolver


@dataclass
class _Checker:
    """Collects the problems of one pipeline file as it is read."""

    doc: YamlDoc
    config: Config
    registry: ModuleRegistry
    within: tuple[Path, ...] = ()  # this file and the files that run it as a sub-pipeline

    def __post_init__(self) -> None:
        self.problems: list[Problem] = []
        # Asked once per file, not per step: each reads the environment or builds a set (~0.1 s of a
        # 10,000-step validation).
        self.local_default = self.config.uses_local_default
        self.known_providers = self.config.provider_names()
        self.schemas = SchemaReader(self.doc, self.config.base_dir)
        self.base_settings = self.config.file.default_model_config.settings()
        self.infos: dict[str, ModuleInfo | None] = {}
        self.loaded: dict[str, _Loaded | None] = {}
        self.module_checks: dict[str, StepCheck] = {}
        self.tool_resolver: ToolResolver | None = None

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


def check_pipeline(path: str | Path, config: Config, registry: ModuleRegistry, *,
                   _within: tuple[Path, ...] = ()) -> tuple[PipelineGraph | None, list[Problem]]:
    """Read and validate a pipeline; return its graph (when valid) and every problem found.

    `_within`: the pipeline files that (transitively) run this one as a sub-pipeline, to find cycles.
    """
    path = Path(path)
    doc, problems = load_yaml(path)
    if doc is None or problems:
        return None, problems
    check = _Checker(doc, config, registry, within=(*_within, path.resolve()))
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("pipeline"), list) or not data["pipeline"]:
        check.add((), "a pipeline file needs a top-level `pipeline:` list of steps",
                  "see pipelines/planning.yml for an example")
        return None, check.problems
    header = _check_header(check, data)
    parsed, broken_outputs = _check_steps(check, data["pipeline"], ("pipeline",), header)
    steps = _resolve_all(check, parsed, broken_outputs)
    budget = (header.budget_usd if header else None) or config.file.budget_usd
    if budget is not None:  # every model call under the budget, loop bodies and sub-pipelines included
        for step in module_steps(Pipeline(path.stem, doc.path, None, tuple(steps))):
            for message, hint in unpriced_models(step, config, registry):
                check.problems.append(Problem.at(step.location, message, hint))
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


def _check_steps(check: _Checker, items: list[Any], prefix: tuple[Any, ...],
                 header: PipelineHeader | None) -> tuple[list[Parsed], set[str]]:
    """Validate each step alone, so one bad step does not hide the problems of the others."""
    parsed: list[Parsed] = []
    broken_outputs: set[str] = set()  # outputs of steps that failed the schema: not "missing" elsewhere
    for index, item in enumerate(items):
        loc = (*prefix, index)
        if not isinstance(item, dict):
            check.add(loc, f"step {index + 1} must be a mapping with module, inputs and output_name")
            continue
        model: type[StepSpec] | type[LoopEntry] = LoopEntry if "loop" in item else StepSpec
        try:
            spec = model.model_validate(item)
        except ValidationError as exc:
            check.problems += problems_from_validation_error(exc, check.doc, what="step", prefix=loc, model=model)
            broken_outputs |= _outputs_of(item)
            continue
        if isinstance(spec, LoopEntry):
            if prefix != ("pipeline",):
                check.add((*loc, "loop"), "a loop inside a loop body is not supported",
                          "move the inner loop to a sub-pipeline file and run it with pipeline:")
                continue
            body, broken = _check_steps(check, item["loop"]["steps"], (*loc, "loop", "steps"), header)
            broken_outputs |= broken
            step_id = spec.id or spec.output_name
            step = Step(id=step_id, module=LOOP_MODULE, output_name=spec.output_name, inputs=(), supplement=None,
                        model_settings={}, options={}, location=check.location(loc), index=index,
                        critical=spec.critical, priority=spec.priority)
            parsed.append(Parsed(step, spec, loc, body=body))
        elif (spec.module is None) == (spec.pipeline is None):  # checked here: a validator costs every step
            check.add(loc, f"step {spec.id or spec.output_name!r} needs exactly one of `module:` and `pipeline:`",
                      "name a module (or prompt), or a pipeline file to run as this step")
            broken_outputs.add(spec.output_name)
        else:
            parsed.append(_read_step(check, loc, index, spec, header))
    return parsed, broken_outputs


def _outputs_of(item: dict[str, Any]) -> set[str]:
    names = {item["output_name"]} if isinstance(item.get("output_name"), str) else set()
    body = item.get("loop", {}).get("steps") if isinstance(item.get("loop"), dict) else None
    for inner in body if isinstance(body, list) else []:
        if isinstance(inner, dict) and isinstance(inner.get("output_name"), str):
            names.add(inner["output_name"])
    return names


def _read_step(check: _Checker, loc: tuple[Any, ...], index: int, spec: StepSpec,
               header: PipelineHeader | None) -> Parsed:
    if spec.settings is not None:
        for key, meant in misspelled_keys(spec.settings):
            check.add((*loc, "model_config", key), f"unknown model_config key {key!r}", f"did you mean {meant!r}?")
    defaults = header.defaults.settings() if header and header.defaults else None
    settings = merge_model_configs(check.base_settings, defaults, spec.settings.settings() if spec.settings else None)
    step_id = spec.id or spec.output_name
    inferred = _resolve_model(check, loc, step_id, settings) if spec.module is not None else False
    schema = None
    if spec.output_schema is not None:
        schema, problems = check.schemas.read(loc, step_id, spec.output_schema)
        check.problems += problems
    step = Step(id=step_id, module=spec.module or PIPELINE_MODULE, output_name=spec.output_name,
                inputs=tuple(spec.inputs), supplement=spec.supplement, model_settings=settings, options=spec.options,
                location=check.location(loc), index=index, provider_inferred=inferred,
                optional_inputs=tuple(spec.optional_inputs), critical=spec.critical, priority=spec.priority,
                retry=spec.retry, timeout_s=spec.timeout_s, max_cost_usd=spec.max_cost_usd, cache=spec.cache,
                fallbacks=_resolve_fallbacks(check, loc, step_id, spec),
                output_schema=schema, output_retries=spec.output_retries)
    if spec.tools or spec.role is not None:
        step = replace(step, tools=_tool_resolver(check, header).resolve(loc, step_id, spec))
    parsed = Parsed(step, spec, loc)
    if spec.pipeline is not None:
        parsed.sub_path, parsed.sub = spec.pipeline, _load_sub_pipeline(check, loc, step_id, spec.pipeline)
    return parsed


def _tool_resolver(check: _Checker, header: PipelineHeader | None) -> ToolResolver:
    """Made once per file, when the first step with tools or a role is read (loading tools imports code)."""
    if check.tool_resolver is None:
        python = check.registry.tools
        known = python.by_name  # finding the tools fills python.problems
        for problem in python.problems:
            path, _, line = problem.source.rpartition(":")
            check.problems.append(Problem(path if line.isdigit() else problem.source, int(line) if line.isdigit()
                                          else None, f"tool {problem.name!r}: {problem.message}",
                                          "fix the function's signature (JSON-able type hints), or make it private"))
        roles = {**check.config.file.roles, **(header.roles if header else {})}
        check.tool_resolver = ToolResolver(known, check.config.file.mcp_servers, roles,
                                           lambda name: check.registry.resolve(name) is not None,
                                           lambda loc, step_id, raw: _tool_pipeline(check, loc, step_id, raw),
                                           check.add)
    return check.tool_resolver


def _tool_pipeline(check: _Checker, loc: tuple[Any, ...], step_id: str, raw: str) -> SubPipeline | None:
    """A sub-pipeline offered as a tool: its start inputs are the tool's arguments, by name."""
    graph = _load_sub_pipeline(check, loc, step_id, raw, key=None)
    if graph is None:
        return None
    names = start_inputs(graph.pipeline)
    return SubPipeline(raw, graph.pipeline, graph.successors, tuple((name, name) for name in names), None)


def _load_sub_pipeline(check: _Checker, loc: tuple[Any, ...], step_id: str, raw: str,
                       key: str | None = "pipeline") -> PipelineGraph | None:
    """The sub-pipeline's graph, validated recursively (its problems at its own lines); None when broken."""
    loc = (*loc, key) if key else loc
    path, problem = locate_file(check.doc, check.config.base_dir, loc, f"step {step_id!r}: pipeline",
                                raw, (".yml", ".yaml"), "name a pipeline file")
    if path is None:
        check.problems += [problem] if problem else []
        return None
    if path in check.within:
        chain = " -> ".join(str(p.name) for p in (*check.within[check.within.index(path):], path))
        check.add(loc, f"step {step_id!r}: sub-pipelines form a cycle: {chain}",
                  "a pipeline cannot run itself, directly or through others")
        return None
    graph, problems = check_pipeline(path, check.config, check.registry, _within=check.within)
    if problems:
        check.problems += problems
        check.add(loc, f"step {step_id!r}: sub-pipeline {raw} has problems (listed with its lines)",
                  "fix them in that file")
    return graph


def _resolve_all(check: _Checker, parsed: list[Parsed], broken: set[str]) -> list[Step]:
    """Module checks per group of steps (the file's top level, each loop body), then their controls."""
    bodies = [p for p in parsed if p.body is not None]
    _check_unique(check, [s for p in parsed for s in (p, *(p.body or ()))])
    inside = {s.step.output_name: p.step.id for p in bodies for s in p.body or ()}
    _check_modules(check, [p for p in parsed if p.body is None])
    for p in bodies:
        _check_modules(check, p.body or [])
    top = {p.step.output_name: p.step for p in parsed}
    top_names = Names(top, {name: loop for name, loop in inside.items() if name not in top})
    steps = []
    for p in parsed:
        if p.body is None:
            steps.append(_finish_step(check, p, top_names, broken))
            continue
        own = {s.step.output_name: s.step for s in p.body}
        visible = {**{k: v for k, v in top.items() if k != p.step.output_name}, **own}
        names = Names(visible, {name: loop for name, loop in inside.items() if name not in visible})
        body = [_finish_step(check, inner, names, broken) for inner in p.body]
        steps.append(loop_step(p, body, top_names, check.add))
    return steps


def _finish_step(check: _Checker, parsed: Parsed, names: Names, broken: set[str]) -> Step:
    step = parsed.step = resolve(parsed, names, check.add)
    for key, listed in (("inputs", step.inputs), ("optional_inputs", step.optional_inputs)):
        for position, name in enumerate(listed):
            if name not in names.producers and name not in broken:
                message, hint = names.unknown(step.id, name, "needs")
                check.add((*parsed.loc, key, position), message, hint)
    if step.module in check.module_checks:
        check.problems += check.module_checks[step.module](step)
    return step


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


def _check_unique(check: _Checker, group: list[Parsed]) -> None:
    """Output names and ids are unique in the whole file, loop bodies included."""
    first_output: dict[str, Step] = {}
    first_id: dict[str, Step] = {}
    for parsed in group:
        step = parsed.step
        if step.output_name in first_output:
            other = first_output[step.output_name]
            check.add((*parsed.loc, "output_name"), f"two steps produce {step.output_name!r} (also step "
                      f"{other.id!r} at line {other.location.line})", "give each step a distinct output_name")
        elif step.id in first_id:
            check.add(parsed.loc, f"two steps have the id {step.id!r}", "give each step a distinct id")
        first_output.setdefault(step.output_name, step)
        first_id.setdefault(step.id, step)


def _check_modules(check: _Checker, group: list[Parsed]) -> None:
    """Unknown modules, each module's own check and declared schema: once per module name, not per step
    (resolving looks at the file system, and a prompt's template is parsed once however many steps use it)."""
    for parsed in group:
        step = parsed.step
        if step.module == PIPELINE_MODULE:
            continue
        if step.module not in check.infos:
            check.infos[step.module] = check.registry.resolve(step.module)
        if check.infos[step.module] is None:
            check.add((*parsed.loc, "module"), check.registry.unknown_message(step.module, step.id),
                      check.registry.unknown_hint(step.module))
            continue
        if step.module not in check.loaded:
            check.loaded[step.module] = _load_module(check, parsed.loc, step)
            module = check.loaded[step.module]
            if module is not None and module.check is not None:
                check.module_checks[step.module] = module.check
        module = check.loaded[step.module]
        if module is not None and step.output_schema is None and module.schema is not None:
            parsed.step = replace(step, output_schema=module.schema)


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
