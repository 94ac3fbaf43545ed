"""What a person reads before running a plan: its parallel groups, how many model calls it makes and
what they could cost at most, each counted honestly.

- Groups: the top-level steps in Kahn layers (`1: [a]  2: [b, c, d]  3: [e]`): a group's steps run at
  the same time.
- Calls: a prompt step makes 1 call (up to 1 + output_retries with an output_schema); a `when` may
  skip it (at least 0); a loop runs its body 1 to max_iterations times; a fan-out runs once per item,
  which no one knows before the run, so it is shown per item. A Python module decides its own calls:
  named as not counted (start_module makes none).
- Worst case: each counted call at its model's price (fallback models included: the dearest), with
  max_tokens of output (4,096 where unset, the budget guard's assumption) and as input the prompt
  text plus the outputs of the prompt steps it reads (their max_tokens). Run inputs and outputs of
  Python modules, fan-outs, loops and sub-pipelines are not known before the run: said so. A model
  without a known price makes the worst case unknown, never $0; free providers (echo, local) cost 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .config import Config
from .engine.budget import UNSET_MAX_TOKENS_ESTIMATE, estimate_tokens, price_table
from .modules.base import ModuleRegistry
from .modules.front_matter import prompt_body
from .pipeline.graph import PipelineGraph, topological_layers
from .pipeline.spec import Step
from .providers.pricing import PriceTable


@dataclass
class Estimate:
    """Model calls (at least / at most) and the worst-case cost of the most; fan-outs apart, per item."""

    low: int = 0
    high: int = 0
    cost: float | None = 0.0  # None: some counted call's model has no known price
    per_item: list[tuple[str, Estimate]] = field(default_factory=list)  # ("plan.topics (research)", per item)
    uncounted: list[str] = field(default_factory=list)  # steps whose calls a Python module decides
    unpriced: set[str] = field(default_factory=set)
    inputs_unknown: bool = False  # some call reads an input whose length is not known before the run

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.low + other.low, self.high + other.high, _add(self.cost, other.cost),
                        [*self.per_item, *other.per_item], [*self.uncounted, *other.uncounted],
                        self.unpriced | other.unpriced, self.inputs_unknown or other.inputs_unknown)

    def times(self, low: int, high: int, note: str = "") -> Estimate:
        """This estimate repeated between `low` and `high` times (a loop's iterations)."""
        return replace(self, low=self.low * low, high=self.high * high,
                       cost=None if self.cost is None else self.cost * high,
                       per_item=[(label + note, part.times(low, high)) for label, part in self.per_item],
                       uncounted=[name + note for name in self.uncounted])


def _add(first: float | None, second: float | None) -> float | None:
    return None if first is None or second is None else first + second


@dataclass
class _Counter:
    registry: ModuleRegistry
    config: Config
    prices: PriceTable

    def group(self, steps: Iterable[Step]) -> Estimate:
        steps = list(steps)
        producers = {step.output_name: step for step in steps}
        total = Estimate()
        for step in steps:
            total = total + self.step(step, producers)
        return total

    def step(self, step: Step, producers: dict[str, Step]) -> Estimate:
        control = step.control
        if control is not None and control.loop is not None:
            loop = control.loop
            found = self.group(loop.pipeline.steps).times(1, loop.max_iterations,
                                                          f" (in loop {step.id}, up to {loop.max_iterations}x)")
        elif control is not None and control.pipeline is not None:
            found = self.group(control.pipeline.pipeline.steps)
            found.inputs_unknown = found.inputs_unknown or bool(control.pipeline.bindings)
        else:
            found = self.module_call(step, producers)
        if control is not None and control.foreach is not None:
            found = Estimate(per_item=[(f"{control.foreach} ({step.id})", found)],
                             inputs_unknown=found.inputs_unknown)
        if control is not None and control.when is not None:
            found.low = 0
        return found

    def module_call(self, step: Step, producers: dict[str, Step]) -> Estimate:
        info = self.registry.resolve(step.module)
        if info is None or not info.uses_llm:
            if step.module == "start_module" and info is not None and info.kind == "builtin":
                return Estimate()
            return Estimate(uncounted=[f"{step.id} ({step.module}, a Python module)"])
        calls = 1 + (step.output_retries if step.output_schema is not None else 0)
        prompt_tokens, unknown = self.input_tokens(step, producers)
        cost, unpriced = self.call_cost(step, prompt_tokens)
        return Estimate(1, calls, None if cost is None else cost * calls, unpriced=unpriced, inputs_unknown=unknown)

    def input_tokens(self, step: Step, producers: dict[str, Step]) -> tuple[int, bool]:
        """The prompt's estimated tokens plus the inputs known in advance; whether some input is unknown."""
        path = self.registry.prompt_path(step.module)
        try:
            text = prompt_body(path.read_text(encoding="utf-8")) if path is not None else ""
        except (OSError, UnicodeDecodeError):
            text = ""
        tokens, unknown = estimate_tokens(len(text) + len(step.supplement or "")), False
        for name in step.all_inputs:
            producer = producers.get(name)
            info = self.registry.resolve(producer.module) if producer is not None else None
            if producer is None or producer.control is not None or info is None or not info.uses_llm:
                unknown = True  # a run input, a Python module's output, a fan-out's list, a loop's result
            else:
                tokens += output_tokens(producer)
        return tokens, unknown

    def call_cost(self, step: Step, prompt_tokens: int) -> tuple[float | None, set[str]]:
        """The dearest of the step's model and its fallbacks for one call; None when one has no price."""
        candidates = [(step.model_settings.get("provider"), step.model_settings.get("model")),
                      *((f["provider"], f["model"]) for f in step.fallbacks)]
        worst, unpriced = 0.0, set()
        for provider, model in candidates:
            if provider and self.config.is_free(str(provider)):
                continue
            cost = self.prices.cost(str(model), prompt_tokens, output_tokens(step))
            if cost is None:
                unpriced.add(str(model))
            else:
                worst = max(worst, cost)
        return (None if unpriced else worst), unpriced


def output_tokens(step: Step) -> int:
    return int(step.model_settings.get("max_tokens") or UNSET_MAX_TOKENS_ESTIMATE)


def estimate(graph: PipelineGraph, registry: ModuleRegistry, config: Config) -> Estimate:
    """The model calls and worst-case cost of one run of `graph`."""
    return _Counter(registry, config, price_table(config)).group(graph.pipeline.steps)


def parallel_groups(graph: PipelineGraph) -> str:
    """`1: [a]  2: [b, c, d]  3: [e]`: the top-level steps by the layer they can start in."""
    layers = topological_layers(graph.successors) or []
    return "  ".join(f"{number}: [{', '.join(layer)}]" for number, layer in enumerate(layers, 1))


def review_lines(graph: PipelineGraph, registry: ModuleRegistry, config: Config) -> list[str]:
    """The review after the YAML: groups, calls, worst-case cost, and what is not counted."""
    found = estimate(graph, registry, config)
    lines = [f"parallel groups: {parallel_groups(graph)}", f"model calls: {calls_text(found)}",
             f"worst-case cost: {cost_text(found)}"]
    if found.uncounted:
        lines.append("not counted (Python modules decide their own calls): " + ", ".join(found.uncounted))
    notes = ["output: max_tokens per call, 4,096 where unset"]
    if found.inputs_unknown or any(part.inputs_unknown for _, part in found.per_item):
        notes.append("input: the prompts and the prompt outputs they read; run inputs and outputs of Python "
                     "modules, fan-outs, loops and sub-pipelines are not known before the run")
    lines.append("  (" + "; ".join(notes) + ")")
    return lines


def calls_text(found: Estimate) -> str:
    text = str(found.low) if found.low == found.high else f"at least {found.low}, up to {found.high}"
    for label, part in found.per_item:
        per = str(part.high) if part.low == part.high else f"{part.low} to {part.high}"
        text += f"; plus {per} per item of {label}"
    return text


def cost_text(found: Estimate) -> str:
    unpriced = found.unpriced | {model for _, part in found.per_item for model in part.unpriced}
    if unpriced:
        return (f"unknown: no price for {', '.join(sorted(unpriced))} (add it under pricing: in config.yml)")
    text = _usd(found.cost)
    for label, part in found.per_item:
        text += f" plus {_usd(part.cost)} per item of {label}"
    return text


def _usd(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def review_data(graph: PipelineGraph, registry: ModuleRegistry, config: Config) -> dict[str, Any]:
    """The review as data (for `--json`-style callers and tests)."""
    found = estimate(graph, registry, config)
    return {"groups": topological_layers(graph.successors) or [], "calls": {"low": found.low, "high": found.high},
            "per_item": [{"over": label, "low": part.low, "high": part.high, "cost_usd": part.cost}
                         for label, part in found.per_item],
            "cost_usd": None if found.unpriced else found.cost, "unpriced": sorted(found.unpriced),
            "uncounted": found.uncounted}
