"""Run a loaded pipeline end to end: preflight checks, the scheduler, events, the memory log."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import platform
import secrets as _secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..api import (
    Drained,
    DrainsAsync,
    Hook,
    Notice,
    PreflightsSteps,
    RunDrained,
    RunFinished,
    RunStarted,
    RunStatus,
    StepRecord,
    Totals,
)
from ..config import Config
from ..errors import InputError, OrchestraiError, Problem, ValidationFailed
from ..modelconfig import LOCAL_DEFAULT_NOTICE
from ..modules.base import ModuleRegistry
from ..names import is_safe_file_name
from ..pipeline.graph import PipelineGraph
from ..pipeline.spec import module_steps
from ..providers.pool import ProviderPool
from .budget import Budget, unpriced_models
from .cache import CallCache
from .context import RunContext, run_facts
from .events import EventBus
from .options import RunOptions
from .resume import ResumeSource
from .scheduler import Scheduler


@dataclass
class RunResult:
    run_id: str
    status: RunStatus
    # Left out of repr: asyncio.run() formats its finished main task, result included, when it
    # restores the SIGINT handler, and the repr of 10,000 records took 0.6 s after every big run.
    records: list[StepRecord] = field(repr=False)
    outputs: dict[str, Any] = field(repr=False)  # by output_name
    totals: Totals
    final_step_ids: list[str]
    message: str | None = None  # what a budget stop spent and what did not run
    notices: list[str] = field(default_factory=list)
    # The run's Redactor: what a caller prints or stores of outputs and messages goes through it (the
    # values themselves stay as the steps made them: they are the run's data).
    redact: Callable[[str], str] = field(default=str, repr=False, compare=False)


def start_inputs_needed(graph: PipelineGraph, registry: ModuleRegistry) -> list[str]:
    """The run inputs the pipeline's start_module steps will ask for (their output_names)."""
    return [step.output_name for step in graph.pipeline.steps if step.module == "start_module"
            and (info := registry.resolve(step.module)) is not None and info.kind == "builtin"]


def new_run_id() -> str:
    return _secrets.token_hex(4)


async def run_pipeline(graph: PipelineGraph, config: Config, registry: ModuleRegistry,
                       options: RunOptions | None = None, hooks: list[Hook] | None = None) -> RunResult:
    """Run every step of `graph`; finished steps reach the hooks (memory log, progress) as they end."""
    options = options or RunOptions()
    if options.run_id is not None and not is_safe_file_name(options.run_id):  # it becomes part of file paths
        raise InputError(f"run id {options.run_id!r} cannot be part of a file name",
                         hint="use only letters, digits, '_', '-' and '.' (no '/', no leading dot)")
    options.run_id = options.run_id or new_run_id()
    shared = options.shared
    providers = shared.providers if shared is not None else ProviderPool(
        config, force="echo" if options.dry_run else None, preset=options.providers)
    if options.resume is not None:  # a run input not given again is the one the earlier run used
        options.run_inputs = {**resumed_inputs(graph, registry, options.resume), **options.run_inputs}
    _preflight(graph, config, registry, providers, options)
    notices = _NoticeCollector()
    hooks = [*(hooks or []), *_webhook_hooks(config, options), *_trace_hooks(config, options)]
    bus = EventBus([notices, *hooks])
    budget_usd = options.budget_usd or graph.pipeline.budget_usd or config.file.budget_usd
    if shared is not None:
        cache, budget = shared.cache if options.use_cache else None, shared.budget
    else:
        cache = CallCache(config.cache_dir) if config.file.cache and options.use_cache and not options.dry_run \
            else None
        budget = Budget(budget_usd)
    run = RunContext(options.run_id, config, graph, registry, providers, bus, options, budget=budget, cache=cache,
                     shared_limits=shared.rate_limits if shared is not None else None)
    scheduler = Scheduler(run, max_concurrency=options.max_concurrency or config.file.max_concurrency,
                          resume=options.resume)
    started = time.time()
    if bus.wants(RunStarted):  # reading package versions alone takes ~10 ms
        bus.emit(RunStarted(run.run_id, graph.pipeline.name, graph.pipeline.path,
                            tuple(step.id for step in graph.pipeline.steps), started, config.redacted(), versions(),
                            resumed_from=options.resume.run_id if options.resume else None,
                            step_modules=tuple((step.module, step.output_name) for step in graph.pipeline.steps),
                            dry_run=options.dry_run, redact=run.redact,
                            edges=tuple((a, b) for a, after in graph.successors.items() for b in after)))
    for text in config.notices:  # e.g. a config in the original OrchestrAI's format, and how it was read
        bus.emit(Notice(text))
    if not options.dry_run and _on_local_default(graph, config, registry):
        bus.emit(Notice(LOCAL_DEFAULT_NOTICE))
    status: RunStatus = "interrupted"
    message = None
    frozen = _freeze_heap()
    try:
        status = await scheduler.execute()
    finally:
        if frozen:
            _thaw_heap()
        records = list(scheduler.all_records())
        totals = summarize(records, time.time() - started, run.by_model)
        if status == "budget_exceeded":
            message = budget_message(run.budget, records)
        bus.emit(RunFinished(run.run_id, status, time.time(), totals, tuple(records), message))
        await _drain(bus, run.run_id, hooks, run.redact)
        if shared is None:  # shared resources are their owner's to close
            if cache is not None:
                cache.close()
            await _close_quietly(providers)
        await _close_tools(run)
    return RunResult(run.run_id, status, records, dict(scheduler.outputs), totals, graph.sinks(), message,
                     notices.texts, run.redact)


def _trace_hooks(config: Config, options: RunOptions) -> list[Hook]:
    """The OpenTelemetry hook for every run (CLI and library alike) when config has `otel:` or the
    OTEL_EXPORTER_OTLP_* variables say where to; made after the preflight, so a missing extra or an
    unset header variable fails the run before anything is spent. The hook module imports
    OpenTelemetry itself, and only when it is made."""
    if not options.otel or (settings := config.otel_settings()) is None:
        return []
    from ..observe.otel_hook import OtelHook

    return [OtelHook(settings)]


def _webhook_hooks(config: Config, options: RunOptions) -> list[Hook]:
    """The config's webhooks, for every run (CLI and library alike); none in a dry run or when turned off.

    Made here, after the preflight checks and before RunStarted: an unset secret fails the run before
    anything is spent, and the hook is created inside the running loop it queues its deliveries on.
    """
    if not config.file.webhooks or not options.webhooks or options.dry_run:
        return []
    from ..observe.webhooks import Webhooks

    return [Webhooks(config.webhook_endpoints())]


async def _drain(bus: EventBus, run_id: str, hooks: list[Hook], redact: Callable[[str], str]) -> None:
    """After RunFinished: await every DrainsAsync hook at once, each bounded by its own drain_timeout_s;
    what they hand back goes to the log (RunDrained) and the user (Notice). Never raises."""
    drainers = [hook for hook in hooks if isinstance(hook, DrainsAsync)]
    if not drainers:
        return
    with contextlib.suppress(asyncio.CancelledError):  # a second Ctrl-C stops the wait, not the run's outcome
        results = await asyncio.shield(asyncio.gather(*(_drain_one(hook, redact) for hook in drainers)))
        log: dict[str, Any] = {}
        for result in results:
            log.update(result.log if result is not None else {})
            for text in result.notices if result is not None else ():
                bus.emit(Notice(redact(text)))
        if log:
            bus.emit(RunDrained(run_id, log))


async def _drain_one(hook: DrainsAsync, redact: Callable[[str], str]) -> Drained | None:
    name = type(hook).__name__
    try:
        return await asyncio.wait_for(hook.drain(), timeout=hook.drain_timeout_s)
    except asyncio.TimeoutError:
        return Drained(notices=(f"{name} did not finish within {hook.drain_timeout_s:g}s after the run; cut off",))
    except Exception as exc:  # noqa: BLE001 - a hook's trouble must not change the run's outcome
        return Drained(notices=(redact(f"{name} failed after the run: {exc}"),))


def _freeze_heap() -> bool:
    """Keep the garbage collector off the objects that exist before the run (the graph, imports).

    A run allocates many short-lived objects, and every full collection walked everything alive
    besides: ~10% of a 1,000-step run and more of a 10,000-step one. Frozen objects are not freed
    while frozen, so they are unfrozen when the last run inside the freeze ends; a caller that froze
    its own heap is left alone. Runs at the same time in one process (a batch's rows) join the freeze
    already made: `gc.get_freeze_count()` walks the whole frozen heap (O(heap), ~6 ms after a few
    runs), so it is asked only when no run of ours holds a freeze.
    """
    global _RUNS_IN_FREEZE
    if _RUNS_IN_FREEZE:
        _RUNS_IN_FREEZE += 1
        return True
    if gc.get_freeze_count():
        return False
    gc.freeze()
    _RUNS_IN_FREEZE = 1
    return True


def _thaw_heap() -> None:
    global _RUNS_IN_FREEZE
    _RUNS_IN_FREEZE -= 1
    if not _RUNS_IN_FREEZE:
        gc.unfreeze()


_RUNS_IN_FREEZE = 0  # runs (in this process) inside the freeze that the first of them made


class _NoticeCollector:
    """Keeps the run's notices for the result (the display hooks show them as they come)."""

    events = frozenset({Notice})

    def __init__(self) -> None:
        self.texts: list[str] = []

    def on_event(self, event: Any) -> None:
        if isinstance(event, Notice):
            self.texts.append(event.text)


def _on_local_default(graph: PipelineGraph, config: Config, registry: ModuleRegistry) -> bool:
    """Whether model calls run on the local model because nothing was configured (no config, no keys)."""
    return config.uses_local_default and any(
        step.model_settings.get("provider") == "local" and (info := registry.resolve(step.module)) is not None
        and info.uses_llm for step in module_steps(graph.pipeline))


def budget_message(budget: Budget, records: list[StepRecord]) -> str:
    not_run = [r.id for r in records if r.status == "skipped"]
    return (f"budget exceeded: spent ${budget.spent:.4f} of ${budget.limit_usd or 0:.4f}; "
            f"not run: {', '.join(not_run) if not_run else 'nothing'}")


def resumed_inputs(graph: PipelineGraph, registry: ModuleRegistry, resume: ResumeSource) -> dict[str, Any]:
    """The run inputs an earlier run used, for the start_module steps it completed."""
    found = {}
    for name in start_inputs_needed(graph, registry):
        done, value = resume.completed_output(graph.steps[graph.producers[name]].id)
        if done:
            found[name] = value
    return found


def _preflight(graph: PipelineGraph, config: Config, registry: ModuleRegistry, providers: ProviderPool,
               options: RunOptions) -> None:
    """Fail before anything runs (or costs money): missing run inputs, missing API keys, unpriced models."""
    missing = [name for name in start_inputs_needed(graph, registry) if name not in options.run_inputs]
    if missing:
        flags = " ".join(f'--input {name}="..."' for name in missing)
        raise InputError(f"the pipeline needs run input(s) {', '.join(map(repr, missing))}",
                         hint=f"pass {flags}, or pipe the text on stdin")
    # Resolving a module name looks at the file system: once per name, not once per step. Keys and
    # local models are checked once per distinct model settings, by the first step using them.
    every = list(module_steps(graph.pipeline))  # loop bodies and sub-pipelines included
    modules = {step.module for step in every}
    uses_llm = {name: (info := registry.resolve(name)) is not None and info.uses_llm for name in modules}
    prepared: set[str] = set()
    for step in every:
        settings = repr(step.model_settings)
        if uses_llm[step.module] and settings not in prepared:
            try:
                providers.prepare(step.model_settings, step=step.id)
            except OrchestraiError as exc:
                inferred = config.inference_note(step)
                if inferred and not options.dry_run:
                    exc.message = f"{exc.message} ({inferred})"
                raise
            prepared.add(settings)
    # A module may refuse up front (e.g. it would run code nobody can allow): an optional `preflight`.
    instances = {name: registry.instance(name) for name in modules}
    checks = {name: module.preflight for name, module in instances.items() if isinstance(module, PreflightsSteps)}
    facts = run_facts(str(options.run_id), config, options, registry)
    for step in every:  # in file order, so the first offending step is the one named
        if step.module in checks:
            checks[step.module](step, facts)
    if options.budget_usd is not None and not options.dry_run:
        problems = [Problem.at(step.location, message, hint)
                    for step in every for message, hint in unpriced_models(step, config, registry)]
        if problems:
            raise ValidationFailed(problems)


def summarize(records: list[StepRecord], duration_s: float,
              by_model: dict[str, dict[str, Any]] | None = None) -> Totals:
    """Tokens and cost over all steps; cost_complete is False when some model had no known price.

    The cost is None when calls were made and none had a price: unknown, not $0 (free providers
    are priced at zero, so their runs cost 0.0).
    """
    input_tokens = output_tokens = cached = resumed = 0
    cost, complete, priced = 0.0, True, False
    for record in records:  # one pass: this ran after every step of a 10,000-step run
        input_tokens += record.usage.input_tokens
        output_tokens += record.usage.output_tokens
        if record.calls:
            if record.cost_usd is None:
                complete = False
            else:
                priced = True
                cost += record.cost_usd
        cached += record.status == "cached"
        resumed += record.status == "resumed"
    return Totals(input_tokens=input_tokens, output_tokens=output_tokens,
                  cost_usd=round(cost, 6) if priced or complete else None,
                  cost_complete=complete, duration_s=round(duration_s, 3), by_model=dict(by_model or {}),
                  cached_steps=cached, resumed_steps=resumed)


def versions() -> dict[str, str]:
    """What produced a run, for its log. Read from package metadata once per process (~10 ms)."""
    global _VERSIONS
    if _VERSIONS is None:
        from importlib.metadata import PackageNotFoundError, version

        found = {"python": platform.python_version()}
        for package in ("orchestrai", "openai", "anthropic", "llama-cpp-python"):
            try:
                found[package] = version(package)
            except PackageNotFoundError:
                found[package] = "not installed"
        _VERSIONS = found
    return dict(_VERSIONS)


_VERSIONS: dict[str, str] | None = None


async def _close_quietly(providers: ProviderPool) -> None:
    # Closing sockets must not mask the run's outcome (nor a cancellation arriving meanwhile).
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.shield(providers.aclose())


async def _close_tools(run: RunContext) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):  # MCP servers: the same
        await asyncio.shield(run.close_tools())


def run_pipeline_sync(graph: PipelineGraph, config: Config, registry: ModuleRegistry,
                      options: RunOptions | None = None, hooks: list[Hook] | None = None) -> RunResult:
    """`run_pipeline` for callers without an event loop."""
    return asyncio.run(run_pipeline(graph, config, registry, options, hooks))

