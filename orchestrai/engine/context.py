"""What a running step can reach: its inputs, the run's providers, and `complete`, which makes one
model call the way every call is made: cache, budget, rate limits, timeout, retries, fallbacks,
accounting and events.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import api, schemas
from ..api import (
    CallFinished,
    Completion,
    FanoutStarted,
    LoopIteration,
    Message,
    Notice,
    Provider,
    RateLimitWaited,
    RunFacts,
    StepEnded,
    StepRecord,
    StepRetrying,
    StepStarted,
    StepToken,
    TokenCallback,
    ToolCalled,
)
from ..config import Config
from ..errors import ModuleError, ProviderError
from ..modules.base import ModuleRegistry
from ..pipeline.graph import PipelineGraph
from ..pipeline.spec import LoopBody, Step, SubPipeline, ToolUse
from ..policies import RetryConfig
from ..providers.pool import ProviderPool
from .budget import UNSET_MAX_TOKENS_ESTIMATE, Budget, BudgetExceeded, estimate_tokens, price_table
from .cache import CallCache, cache_key
from .events import EventBus
from .options import RunOptions
from .ratelimit import RateLimits, SlidingWindowLimiter
from .redact import Redactor, provider_keys
from .structured import mismatch_message, structured_call

if TYPE_CHECKING:
    from .agent import Toolbox

Spawn = Callable[[ToolUse, dict[str, Any], int], Coroutine[Any, Any, Any]]  # run a module/pipeline tool

@dataclass
class RunContext:
    """Everything shared by the steps of one run. Passed down explicitly; there is no global state."""

    run_id: str
    config: Config
    graph: PipelineGraph
    registry: ModuleRegistry
    providers: ProviderPool
    bus: EventBus
    options: RunOptions = field(default_factory=RunOptions)
    budget: Budget = field(default_factory=lambda: Budget(None))
    cache: CallCache | None = None
    shared_limits: RateLimits | None = None  # a batch's or eval's limiters, shared by its runs

    def __post_init__(self) -> None:
        self.prices = price_table(self.config)
        # The run's one Redactor (hooks get it with RunStarted): the config's keys, those only in the
        # environment, and those of ready-made providers a library caller passed in.
        self.redact = Redactor([*self.config.secrets(), *provider_keys(self.options.providers.values())])
        self.rate_limits = self.shared_limits or RateLimits(self.config.rate_limits)
        self.by_model: dict[str, dict[str, Any]] = {}
        self._noticed: set[str] = set()
        self._provider_kinds: dict[str, tuple[str, bool]] = {}
        self.report_calls = self.bus.wants(CallFinished)  # nobody listening: the event is not even built
        self.announces = (self.bus.wants(StepStarted), self.bus.wants(StepEnded))  # for every scheduler of the run
        self._report_fanouts = self.bus.wants(FanoutStarted)
        self._report_iterations = self.bus.wants(LoopIteration)
        self.facts = run_facts(self.run_id, self.config, self.options, self.registry)
        self._graphs: dict[int, PipelineGraph] = {}
        self._report_tools = self.bus.wants(ToolCalled)
        self._toolboxes: dict[int, asyncio.Task[Toolbox]] = {}
        self.mcp: Any = None  # the run's McpServers (orchestrai.tools.mcp), made when a step first uses one
        self._role_budgets: dict[str, Budget] = {}

    async def toolbox(self, step: Step) -> Toolbox:
        """The step's tools as the model is offered them, built once per step (MCP servers listed once)."""
        assert step.tools is not None
        key = id(step.tools)
        if key not in self._toolboxes:  # a task, so a fan-out's items share one build
            from .toolbox import build_toolbox

            self._toolboxes[key] = asyncio.ensure_future(build_toolbox(self, step.tools))
        return await asyncio.shield(self._toolboxes[key])

    def announce_tool(self, event: ToolCalled) -> None:
        if self._report_tools:
            self.bus.emit(event)

    def role_budget(self, step: Step) -> Budget | None:
        """The budget all steps of the step's role share in this run, when the role sets one."""
        tools = step.tools
        if tools is None or tools.role is None or tools.role_budget_usd is None:
            return None
        if tools.role not in self._role_budgets:
            self._role_budgets[tools.role] = Budget(tools.role_budget_usd)
        return self._role_budgets[tools.role]

    async def close_tools(self) -> None:
        if self.mcp is not None:
            await self.mcp.aclose()

    def graph_of(self, part: LoopBody | SubPipeline) -> PipelineGraph:
        """The graph of a loop body or sub-pipeline, built once per run (the part lives as long as the pipeline)."""
        graph = self._graphs.get(id(part))
        if graph is None:
            graph = self._graphs[id(part)] = PipelineGraph(part.pipeline, part.successors)
        return graph

    @property
    def run_inputs(self) -> dict[str, Any]:
        return self.options.run_inputs

    @property
    def stream(self) -> bool:
        return self.options.stream

    def provider_kind(self, name: str) -> tuple[str, bool]:
        """The type name of provider `name` and whether it is free, looked up once per run."""
        if name not in self._provider_kinds:
            self._provider_kinds[name] = (str(self.config.provider(name).type), self.config.is_free(name))
        return self._provider_kinds[name]

    def retry_policy(self, step: Step) -> RetryConfig:
        """The config's retry policy with the step's own settings on top."""
        return self.config.file.retry.merged(step.retry)

    def announce_fanout(self, record_id: str, total: int) -> None:
        if self._report_fanouts:
            self.bus.emit(FanoutStarted(record_id, total))

    def announce_iteration(self, record_id: str, iteration: int, max_iterations: int) -> None:
        if self._report_iterations:
            self.bus.emit(LoopIteration(record_id, iteration, max_iterations))

    def notice(self, text: str) -> None:
        """Tell the user something once per run."""
        if text not in self._noticed:
            self._noticed.add(text)
            self.bus.emit(Notice(self.redact(text)))


def run_facts(run_id: str, config: Config, options: RunOptions, registry: ModuleRegistry) -> RunFacts:
    """What modules may know about a run (orchestrai.api.RunFacts), decided once when it starts."""
    workspace = Path(options.workspace).expanduser().resolve() if options.workspace is not None else None
    return RunFacts(run_id=run_id, dry_run=options.dry_run, base_dir=config.base_dir, workspace=workspace,
                    workspace_root=(config.base_dir / config.file.workspace_dir).resolve(),
                    allow_execution=options.allow_execution or config.file.allow_execution,
                    no_exec=options.no_exec, confirm=options.confirm,
                    provider_names=frozenset(config.provider_names()), secrets=tuple(config.secrets()),
                    prompt_path=registry.prompt_path)


@dataclass
class StepContext:
    """Given to a module's `run` (implements orchestrai.api.StepContext): the step, the run, and `complete`."""

    step: Step
    run: RunContext
    record: StepRecord
    scope: Mapping[str, Any] | None = None  # a sub-pipeline's run inputs (None: the run's)
    spawn: Spawn | None = None  # runs a module or sub-pipeline offered as a tool (set for steps with tools)
    _structured: Any = field(default=None, repr=False)  # the value complete_structured last returned
    _limit_wait: float = field(default=0.0, repr=False)  # the last attempt's wait for rate limits (s)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def run_inputs(self) -> Mapping[str, Any]:
        return self.run.run_inputs if self.scope is None else self.scope

    @property
    def details(self) -> dict[str, Any]:
        return self.record.details

    @property
    def facts(self) -> RunFacts:
        return self.run.facts

    def notice(self, text: str) -> None:
        self.run.notice(text)

    def redact(self, text: str) -> str:
        return self.run.redact(text)

    async def complete(self, messages: list[Message], **overrides: Any) -> Completion:
        """Call the step's model (settings overridable per call); fall back to `fallback_models` in order."""
        # Not dataclasses.asdict: its recursive deep copy was a tenth of a step's cost, for two strings.
        self.record.messages.extend([{"role": m.role, "content": m.content} for m in messages])
        return await self._call(messages, overrides)

    async def complete_structured(self, messages: list[Message], schema: Mapping[str, Any] | None = None,
                                  **overrides: Any) -> Any:
        """The model's answer as a JSON value matching `schema` (default: the step's output_schema)."""
        schema = schema if schema is not None else self.step.output_schema
        if schema is None:
            raise ModuleError(f"{self.step.location}: step {self.step.id!r}: complete_structured needs a schema",
                              hint="set output_schema on the step, or pass schema=")
        value = await structured_call(self._call, self.step, self.record, messages, schema, overrides)
        self._structured = value
        return value

    def check_output(self, output: Any) -> None:
        """Raise the step's ModuleError unless `output` matches the step's output_schema (the module's return)."""
        if self.step.output_schema is None or output is self._structured:  # complete_structured checked it
            return
        issue = schemas.validate(output, self.step.output_schema)
        if issue is not None:
            raise ModuleError(mismatch_message(self.step, issue), hint="the module returned a value that does "
                              "not match the step's output_schema")

    def _call(self, messages: list[Message], overrides: dict[str, Any]) -> Coroutine[Any, Any, Completion]:
        """The call's coroutine, not awaited here: a plain call awaits `_complete_with` itself, with no
        coroutine layer added in between (the engine is measured per step)."""
        tools = self.step.tools
        if tools is not None and tools.uses and "tools" not in overrides:  # the tool loop (its rounds come back here)
            return self._with_tools(messages, overrides)
        primary = {**self.step.model_settings, **overrides} if overrides else self.step.model_settings
        if not self.step.fallbacks:
            return self._complete_with(primary, messages)
        return self._with_fallbacks(primary, messages)

    async def _with_tools(self, messages: list[Message], overrides: dict[str, Any]) -> Completion:
        from .agent import run_tool_loop

        tools = self.step.tools
        assert tools is not None
        toolbox = await self.run.toolbox(self.step)
        return await run_tool_loop(self, toolbox, messages, overrides, self._call, tools.max_rounds, tools.timeout_s)

    async def _with_fallbacks(self, primary: dict[str, Any], messages: list[Message]) -> Completion:
        candidates = [primary, *({**primary, **fallback} for fallback in self.step.fallbacks)]
        for position, settings in enumerate(candidates):
            try:
                return await self._complete_with(settings, messages)
            except ProviderError as exc:
                # A model that stays unavailable (retries exhausted, or unknown) hands over to the next.
                if position == len(candidates) - 1 or not (exc.retryable or exc.kind == "not_found"):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _complete_with(self, settings: dict[str, Any], messages: list[Message]) -> Completion:
        run = self.run
        provider = run.providers.get(settings["provider"], step=self.step.id)
        self.record.provider, self.record.model = provider.name, str(settings["model"])
        kind, free = run.provider_kind(provider.name)
        key = self._cache_key(kind, provider, settings, messages) if run.cache is not None else None
        if key is not None and run.cache is not None:
            hit = run.cache.get(key)
            self._report_cache_problem()
            if hit is not None:
                self._account(hit, 0.0, cached=True)
                return hit
        on_token = self._token_sink() if run.stream else None
        # Retries, inline rather than a coroutine of their own: one layer fewer on every call.
        policy, model, attempt = run.retry_policy(self.step), self.record.model, 0
        while True:
            attempt += 1
            started = time.time()
            try:
                completion = await self._one_attempt(provider, messages, settings, on_token, free)
                break
            except ProviderError as exc:
                await asyncio.sleep(self._after_failed_attempt(exc, policy, attempt, model, started))
        entry = {"attempt": attempt, "model": model, "started_at": started,
                 "latency_s": round(completion.latency_s, 4)}
        if self._limit_wait:
            entry["rate_limit_wait_s"] = self._limit_wait
        self.record.attempts.append(entry)
        cost = 0.0 if free else run.prices.cost(completion.model, completion.usage.input_tokens,
                                                completion.usage.output_tokens)
        if key is not None and run.cache is not None:
            run.cache.put(key, completion)
            self._report_cache_problem()
        self._account(completion, cost)
        return Completion(completion.text, completion.usage, completion.model, completion.provider,
                          completion.latency_s, completion.raw_id, cost, completion.tool_calls)

    def _cache_key(self, kind: str, provider: Provider, settings: dict[str, Any],
                   messages: list[Message]) -> str | None:
        if not self.step.cache or kind == "echo":
            return None
        return cache_key(kind, getattr(provider, "base_url", None),
                         {k: v for k, v in settings.items() if k != "provider"}, messages)

    def _after_failed_attempt(self, exc: ProviderError, policy: RetryConfig, attempt: int, model: str,
                              started: float) -> float:
        """Record a failed attempt; the wait before the next one, or the step's error when none is left."""
        error = self.run.redact(exc.message)
        retry = exc.retryable and attempt < policy.max_attempts
        wait = backoff(policy, attempt, exc.retry_after_s) if retry else 0.0
        entry = {"attempt": attempt, "model": model, "started_at": started,
                 "error": error, "kind": exc.kind, "wait_s": round(wait, 3)}
        if self._limit_wait:
            entry["rate_limit_wait_s"] = self._limit_wait
        self.record.attempts.append(entry)
        if not retry:
            tried = f" after {attempt} attempts" if attempt > 1 else ""
            inferred = self.run.config.inference_note(self.step)
            raise ProviderError(f"step {self.step.id!r}: {error}{tried}" + (f" ({inferred})" if inferred else ""),
                                kind=exc.kind, hint=exc.hint) from None
        self.run.bus.emit(StepRetrying(self.record.id, attempt, error, wait))
        return wait

    async def _one_attempt(self, provider: Provider, messages: list[Message], settings: dict[str, Any],
                           on_token: TokenCallback | None, free: bool) -> Completion:
        """One call: reserve its worst-case cost, wait for the rate limits, then call with the step's timeout."""
        run, step = self.run, self.step
        model = str(settings["model"])
        max_tokens = int(settings.get("max_tokens") or UNSET_MAX_TOKENS_ESTIMATE)
        tokens = estimate_tokens(sum([len(m.content) for m in messages])) + max_tokens
        reservation = role_reservation = None
        role_budget: Budget | None = None
        if not free:  # a free model (echo, local) needs no budget bookkeeping at all
            worst = run.prices.cost(model, tokens - max_tokens, max_tokens)
            self._check_step_budget(worst, model)
            reservation = run.budget.reserve(worst, step_id=step.id, model=model)
            role_budget = run.role_budget(step)
            if role_budget is not None:
                try:
                    role_reservation = role_budget.reserve(worst, step_id=step.id, model=model)
                except BudgetExceeded as exc:
                    run.budget.settle(reservation, None)
                    raise BudgetExceeded(f"{exc.message} (the budget_usd of its role)",
                                         hint="raise the role's budget_usd") from None
        limiters = run.rate_limits.limiters_for(provider.name, model)
        self._limit_wait = 0.0
        permits = await self._acquire(limiters, tokens, provider.name, model) if limiters else ()
        completion = None
        try:
            call = provider.complete(messages, settings, on_token=on_token)
            completion = await (asyncio.wait_for(call, step.timeout_s) if step.timeout_s else call)
            return completion
        except asyncio.TimeoutError:
            raise ProviderError(f"provider {provider.name!r} did not answer within the step's timeout_s="
                                f"{step.timeout_s:g}", kind="timeout") from None
        finally:
            if permits:
                used = completion.usage.input_tokens + completion.usage.output_tokens if completion else None
                for limiter, permit in permits:
                    limiter.release(permit, used)
            if reservation is not None:
                cost = None if completion is None else run.prices.cost(
                    completion.model, completion.usage.input_tokens, completion.usage.output_tokens)
                run.budget.settle(reservation, cost)
                if role_budget is not None and role_reservation is not None:
                    role_budget.settle(role_reservation, cost)

    async def _acquire(self, limiters: list[SlidingWindowLimiter], tokens: int, provider: str,
                       model: str) -> list[tuple[SlidingWindowLimiter, Any]]:
        """Permits from every limiter; a wait of 10 ms or more is recorded on the attempt and emitted."""
        permits: list[tuple[SlidingWindowLimiter, Any]] = []
        priority = (-self.step.priority, self.step.index)
        began = time.perf_counter()
        try:
            for limiter in limiters:
                permits.append((limiter, await limiter.acquire(tokens, priority)))
        except BaseException:
            for limiter, permit in permits:
                limiter.release(permit, None)
            raise
        waited = time.perf_counter() - began
        if waited >= 0.01:  # an admission without waiting takes microseconds; below 10 ms is noise
            self._limit_wait = round(waited, 3)
            if self.run.bus.wants(RateLimitWaited):
                self.run.bus.emit(RateLimitWaited(self.record.id, provider, model, self._limit_wait))
        return permits

    def _check_step_budget(self, worst: float | None, model: str) -> None:
        limit = self.step.max_cost_usd
        if limit is None or worst is None:
            return
        spent = self.record.cost_usd or 0.0
        if spent + worst > limit:
            raise BudgetExceeded(f"step {self.step.id!r}: a call to {model} could cost up to ${worst:.4f}; with "
                                 f"${spent:.4f} spent that could cross its max_cost_usd of ${limit:.4f}",
                                 hint="raise the step's max_cost_usd or lower its max_tokens")

    def _account(self, completion: Completion, cost: float | None, *, cached: bool = False) -> None:
        record = self.record
        known = record.calls == 0 or record.cost_usd is not None
        record.calls += 1
        record.cache_hits += cached
        record.usage = record.usage + completion.usage
        record.cost_usd = (record.cost_usd or 0.0) + cost if (cost is not None and known) else None
        model = self.run.by_model.get(completion.model)
        if model is None:
            model = self.run.by_model[completion.model] = {"calls": 0, "cached_calls": 0, "input_tokens": 0,
                                                           "output_tokens": 0, "cost_usd": 0.0}
        model["calls"] += 1
        model["cached_calls"] += cached
        model["input_tokens"] += completion.usage.input_tokens
        model["output_tokens"] += completion.usage.output_tokens
        model["cost_usd"] = None if cost is None or model["cost_usd"] is None else model["cost_usd"] + cost
        if self.run.report_calls:
            self.run.bus.emit(CallFinished(self.record.id, completion.provider, completion.model, completion.usage,
                                           cost, completion.latency_s, cached))

    def _report_cache_problem(self) -> None:
        if self.run.cache is not None and self.run.cache.problem:
            self.run.notice(self.run.cache.problem)

    def _token_sink(self) -> TokenCallback:
        emit, step_id = self.run.bus.emit, self.step.id
        return lambda text: emit(StepToken(step_id, text))


def backoff(policy: RetryConfig, attempt: int, retry_after_s: float | None) -> float:
    """Exponential backoff with jitter; a server's Retry-After wins when it asks for longer."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
    wait = ceiling - random.uniform(0, ceiling * policy.jitter)
    return float(max(wait, min(retry_after_s, policy.max_delay_s))) if retry_after_s is not None else float(wait)


if TYPE_CHECKING:  # mypy checks that the engine's StepContext is what orchestrai.api promises modules
    _IMPLEMENTS: type[api.StepContext] = StepContext
