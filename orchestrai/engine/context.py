"""What a running step can reach: its inputs, the run's providers, and a retried, accounted `complete`."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import Config, RetryConfig
from ..errors import ProviderError
from ..modules.base import ModuleRegistry
from ..pipeline.graph import PipelineGraph
from ..pipeline.spec import Step
from ..providers.base import Completion, Message, TokenCallback
from ..providers.pool import ProviderPool
from ..providers.pricing import PriceTable
from ..redact import Redactor
from .options import RunOptions
from .events import CallFinished, EventBus, StepRecord, StepRetrying, StepToken


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

    def __post_init__(self) -> None:
        self.prices = PriceTable({name: (p.input, p.output) for name, p in self.config.file.pricing.items()})
        self.redact = Redactor(self.config.secrets())
        self.retry: RetryConfig = self.config.file.retry

    @property
    def run_inputs(self) -> dict[str, Any]:
        return self.options.run_inputs

    @property
    def stream(self) -> bool:
        return self.options.stream


@dataclass
class StepContext:
    """Given to a module's `run`: the step, the run inputs and a way to call the step's model."""

    step: Step
    run: RunContext
    record: StepRecord

    @property
    def run_inputs(self) -> dict[str, Any]:
        return self.run.run_inputs

    async def complete(self, messages: list[Message], **overrides: Any) -> Completion:
        """Call the step's model (settings overridable per call), with retries, events and accounting."""
        settings = {**self.step.model_settings, **overrides}
        provider = self.run.providers.get(settings["provider"], step=self.step.id)
        self.record.provider, self.record.model = provider.name, str(settings["model"])
        self.record.messages.extend(asdict(m) for m in messages)
        on_token = self._token_sink() if self.run.stream else None
        completion = await self._with_retries(provider, messages, settings, on_token)
        cost = 0.0 if self.run.config.provider(provider.name).type == "echo" else \
            self.run.prices.cost(completion.model, completion.usage.input_tokens, completion.usage.output_tokens)
        self._account(completion, cost)
        return Completion(completion.text, completion.usage, completion.model, completion.provider,
                          completion.latency_s, completion.raw_id, cost)

    async def _with_retries(self, provider: Any, messages: list[Message], settings: dict[str, Any],
                            on_token: TokenCallback | None) -> Completion:
        policy = self.run.retry
        for attempt in range(1, policy.max_attempts + 1):
            started = time.time()
            try:
                completion = await provider.complete(messages, settings, on_token=on_token)
            except ProviderError as exc:
                error = self.run.redact(exc.message)
                retry = exc.retryable and attempt < policy.max_attempts
                wait = backoff(policy, attempt, exc.retry_after_s) if retry else 0.0
                self.record.attempts.append({"attempt": attempt, "started_at": started, "error": error,
                                             "kind": exc.kind, "wait_s": round(wait, 3)})
                if not retry:
                    tried = f" after {attempt} attempts" if attempt > 1 else ""
                    raise ProviderError(f"step {self.step.id!r}: {error}{tried}", kind=exc.kind, hint=exc.hint) from None
                self.run.bus.emit(StepRetrying(self.step.id, attempt, error, wait))
                await asyncio.sleep(wait)
                continue
            self.record.attempts.append({"attempt": attempt, "started_at": started,
                                         "latency_s": round(completion.latency_s, 4)})
            return completion
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _account(self, completion: Completion, cost: float | None) -> None:
        record = self.record
        known = record.calls == 0 or record.cost_usd is not None
        record.calls += 1
        record.usage = record.usage + completion.usage
        record.cost_usd = (record.cost_usd or 0.0) + cost if (cost is not None and known) else None
        self.run.bus.emit(CallFinished(self.step.id, completion.provider, completion.model, completion.usage,
                                       cost, completion.latency_s))

    def _token_sink(self) -> TokenCallback:
        emit, step_id = self.run.bus.emit, self.step.id
        return lambda text: emit(StepToken(step_id, text))


def backoff(policy: RetryConfig, attempt: int, retry_after_s: float | None) -> float:
    """Exponential backoff with jitter (half to all of the ceiling); a server's Retry-After wins when it asks for longer."""
    ceiling = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
    wait = random.uniform(ceiling / 2, ceiling)
    return max(wait, min(retry_after_s, policy.max_delay_s)) if retry_after_s is not None else wait
