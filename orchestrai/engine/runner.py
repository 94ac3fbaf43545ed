"""Run a loaded pipeline end to end: preflight checks, the scheduler, events, the memory log."""

from __future__ import annotations

import asyncio
import platform
import secrets as _secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..errors import InputError
from ..modules.base import ModuleRegistry
from ..pipeline.graph import PipelineGraph
from ..providers.pool import ProviderPool
from .context import RunContext
from .options import RunOptions
from .events import EventBus, Hook, RunFinished, RunStarted, StepRecord, Totals
from .scheduler import Scheduler


@dataclass
class RunResult:
    run_id: str
    status: str
    records: list[StepRecord]
    outputs: dict[str, Any]  # by output_name
    totals: Totals
    final_step_ids: list[str]


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
    providers = ProviderPool(config, force="echo" if options.dry_run else None, preset=options.providers)
    _preflight(graph, registry, providers, options)
    bus = EventBus(hooks)
    run = RunContext(options.run_id or new_run_id(), config, graph, registry, providers, bus, options)
    scheduler = Scheduler(run, max_concurrency=options.max_concurrency or config.file.max_concurrency)
    started = time.time()
    bus.emit(RunStarted(run.run_id, graph.pipeline.name, graph.pipeline.path,
                        tuple(step.id for step in graph.pipeline.steps), started, config.redacted(), versions()))
    status = "interrupted"
    try:
        status = await scheduler.execute()
    finally:
        records = list(scheduler.records.values())
        totals = summarize(records, time.time() - started)
        bus.emit(RunFinished(run.run_id, status, time.time(), totals, tuple(records)))
        await _close_quietly(providers)
    outputs = {graph.steps[r.id].output_name: r.output for r in records if r.status == "completed"}
    return RunResult(run.run_id, status, records, outputs, totals, graph.sinks())


def _preflight(graph: PipelineGraph, registry: ModuleRegistry, providers: ProviderPool, options: RunOptions) -> None:
    """Fail before anything runs (or costs money): missing run inputs and missing API keys."""
    missing = [name for name in start_inputs_needed(graph, registry) if name not in options.run_inputs]
    if missing:
        flags = " ".join(f'--input {name}="..."' for name in missing)
        raise InputError(f"the pipeline needs run input(s) {', '.join(map(repr, missing))}", hint=f"pass {flags}")
    for step in graph.pipeline.steps:
        info = registry.resolve(step.module)
        if info is not None and info.uses_llm:
            providers.check_key(step.model_settings["provider"], step=step.id)


def summarize(records: list[StepRecord], duration_s: float) -> Totals:
    """Tokens and cost over all steps; cost_complete is False when some model had no known price."""
    used = [r for r in records if r.calls]
    return Totals(
        input_tokens=sum(r.usage.input_tokens for r in records),
        output_tokens=sum(r.usage.output_tokens for r in records),
        cost_usd=round(sum(r.cost_usd or 0.0 for r in used), 6),
        cost_complete=all(r.cost_usd is not None for r in used),
        duration_s=round(duration_s, 3),
    )


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("orchestrai", "openai", "anthropic"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


async def _close_quietly(providers: ProviderPool) -> None:
    try:
        await asyncio.shield(providers.aclose())
    except (Exception, asyncio.CancelledError):  # noqa: BLE001 - closing sockets must not mask the run's outcome
        pass


def run_pipeline_sync(graph: PipelineGraph, config: Config, registry: ModuleRegistry,
                      options: RunOptions | None = None, hooks: list[Hook] | None = None) -> RunResult:
    """`run_pipeline` for callers without an event loop."""
    return asyncio.run(run_pipeline(graph, config, registry, options, hooks))

