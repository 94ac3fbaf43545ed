"""Validation of the deciding parts of a pipeline: `when`, `foreach`, loops and sub-pipelines.

The loader reads each step; this module gives each step its `Control` once every name of the file is
known, so a reference can be checked against its producer's output_schema and a name produced only
inside another loop is reported as such. Every problem is collected, with its `path:line`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .expressions import Expression, ExpressionFailed, Reference, parse_expression, parse_reference, schema_at
from .graph import PipelineGraph, start_inputs, wire_steps
from .spec import Control, LoopBody, LoopEntry, Pipeline, Step, StepSpec, SubPipeline

Add = Callable[[tuple[Any, ...], str, str | None], None]  # (yaml location, message, hint)


@dataclass
class Parsed:
    """A step as read, before its control is resolved."""

    step: Step
    spec: StepSpec | LoopEntry
    loc: tuple[Any, ...]
    body: list[Parsed] | None = None  # a loop's steps
    sub: PipelineGraph | None = None  # a sub-pipeline step's graph, when it loaded
    sub_path: str | None = None


@dataclass
class Names:
    """Which outputs a group of steps may read, and what produces them."""

    producers: dict[str, Step]  # visible output name -> step
    elsewhere: dict[str, str] = field(default_factory=dict)  # name only inside loop -> that loop's id

    def unknown(self, step_id: str, name: str, what: str, also: Mapping[str, Step] | None = None) -> tuple[str, str]:
        """The message and hint for a name this group cannot read (`also`: more names it may read)."""
        if name in self.elsewhere:
            return (f"step {step_id!r} {what} {name!r}, which exists only inside loop {self.elsewhere[name]!r}",
                    f"read the loop's output_name instead, or move the step into loop {self.elsewhere[name]!r}")
        close = difflib.get_close_matches(name, [*self.producers, *(also or ())], n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"add a step with output_name: {name}, or fix the spelling"
        return f"step {step_id!r} {what} {name!r}, which no step produces", hint


def resolve(parsed: Parsed, names: Names, add: Add) -> Step:
    """The step with its Control: expressions parsed, references checked, sub-pipeline inputs bound."""
    spec, step = parsed.spec, parsed.step
    when = _expression(parsed, "when", spec.when, names, add) if spec.when is not None else None
    foreach = item_name = concurrency = None
    join: str | int = "all"
    sub = None
    if isinstance(spec, StepSpec):
        if spec.foreach is not None:
            foreach = _foreach(parsed, spec.foreach, names, add)
            item_name, concurrency = spec.as_, spec.max_concurrency
            join = spec.join if isinstance(spec.join, str) else spec.join.min_success
            if spec.as_ in step.all_inputs:
                add((*parsed.loc, "as"), f"step {step.id!r}: the item name {spec.as_!r} is also one of its inputs",
                    "choose another name with as:")
        elif spec.max_concurrency is not None or spec.join != "all" or "as" in spec.model_fields_set:
            add(parsed.loc, f"step {step.id!r}: as, max_concurrency and join apply only to a foreach step",
                "add foreach: <a list output>, or remove them")
        if parsed.sub is not None:
            sub = _sub_pipeline(parsed, spec, item_name, add)
    if when is None and foreach is None and sub is None and parsed.body is None:
        return step
    read = [*(when.names if when else ()), *((foreach.root,) if foreach else ())]
    waits_for = tuple(dict.fromkeys(name for name in read if name not in step.all_inputs and name in names.producers))
    return replace(step, control=Control(when=when, foreach=foreach, item_name=item_name or "item",
                                         item_concurrency=concurrency, join=join, pipeline=sub, waits_for=waits_for))


def _expression(parsed: Parsed, key: str, source: str, names: Names, add: Add,
                extra: Mapping[str, Step] | None = None) -> Expression | None:
    """A when/until expression, with each name it reads known and each field in its producer's schema."""
    where = (*parsed.loc, "loop", key) if key == "until" else (*parsed.loc, key)
    try:
        expression = parse_expression(source)
    except ExpressionFailed as exc:
        add(where, f"step {parsed.step.id!r}: {key}: {exc}", "write a Jinja2 expression, e.g. review.score >= 8")
        return None
    producers = {**names.producers, **(extra or {})}
    good = True
    for ref in expression.references:
        if ref.root not in producers:
            message, hint = names.unknown(parsed.step.id, ref.root, f"{key} reads", extra)
            add(where, message, hint)
            good = False
            continue
        _, problem = schema_at(producers[ref.root].output_schema, ref.path, ref.root)
        if problem is not None:
            add(where, f"step {parsed.step.id!r}: {key}: {problem}", "fix the reference, or the producer's schema")
            good = False
    return expression if good else None


def _foreach(parsed: Parsed, text: str, names: Names, add: Add) -> Reference | None:
    where, step_id = (*parsed.loc, "foreach"), parsed.step.id
    ref = parse_reference(text, names.producers)
    if ref is None:
        root = text.strip().split(".")[0].split("[")[0]
        message, hint = names.unknown(step_id, root, "foreach reads")
        if root in names.producers:  # the name is known: the rest does not parse
            message, hint = (f"step {step_id!r}: foreach {text!r} is not a reference",
                             "write output_name, then .field or [index] parts, e.g. plan.topics")
        add(where, message, hint)
        return None
    schema, problem = schema_at(names.producers[ref.root].output_schema, ref.path, ref.root)
    if problem is None and schema is not None and schema.get("type") not in (None, "array"):
        problem = f"{ref} is {schema.get('type')!r} in the producer's output_schema, not an array"
    if problem is not None:
        add(where, f"step {step_id!r}: foreach {problem}", "foreach needs a list: point it at an array field")
        return None
    return ref


def _sub_pipeline(parsed: Parsed, spec: StepSpec, item_name: str | None, add: Add) -> SubPipeline | None:
    """Bind the sub-pipeline's run inputs to names of this step (`with:` renames) and check `output:`."""
    graph, step = parsed.sub, parsed.step
    assert graph is not None and parsed.sub_path is not None
    needed = start_inputs(graph.pipeline)
    available = set(step.all_inputs) | ({item_name} if item_name else set())
    for key in spec.with_:
        if key not in needed:
            add((*parsed.loc, "with", key), f"step {step.id!r}: the sub-pipeline has no input {key!r}",
                f"its inputs: {', '.join(needed) or 'none'}")
    bindings = []
    for name in needed:
        source = spec.with_.get(name, name)
        if source not in available:
            add((*parsed.loc, "with", name) if name in spec.with_ else parsed.loc,
                f"step {step.id!r}: sub-pipeline {parsed.sub_path} needs input {name!r}, and {source!r} is not "
                "one of this step's inputs", f"add {source!r} to inputs, or map it: with: {{{name}: <an input>}}")
        bindings.append((name, source))
    outputs = [s.output_name for s in graph.pipeline.steps]
    if spec.output is not None and spec.output not in outputs:
        close = difflib.get_close_matches(spec.output, outputs, n=1)
        add((*parsed.loc, "output"), f"step {step.id!r}: the sub-pipeline has no output {spec.output!r}",
            f"did you mean {close[0]!r}?" if close else f"its outputs: {', '.join(outputs)}")
    return SubPipeline(parsed.sub_path, graph.pipeline, graph.successors, tuple(bindings), spec.output)


def loop_step(parsed: Parsed, body: list[Step], names: Names, add: Add) -> Step:
    """The loop as one step of its file: inputs are what the body reads from outside, control its body."""
    spec = parsed.spec
    assert isinstance(spec, LoopEntry)
    step_id, position = parsed.step.id, {s.output_name: number for number, s in enumerate(body)}
    backward: set[str] = set()
    for number, inner in enumerate(body):
        for name in inner.dependencies:
            if position.get(name, -1) >= number:
                backward.add(name)
                if inner.requires(name):
                    add(("pipeline", *_body_loc(parsed, number), "inputs"),
                        f"step {inner.id!r} in loop {step_id!r} reads {name!r}, produced later in the body: in "
                        "an iteration that is the previous iteration's value, absent in the first",
                        f"list {name!r} under optional_inputs")
    own = {s.output_name: s for s in body}
    until = _expression(parsed, "until", spec.loop.until, names, add, own) if spec.loop.until else None
    output = spec.output or body[-1].output_name
    if output not in own:
        close = difflib.get_close_matches(output, list(own), n=1)
        add((*parsed.loc, "output"), f"loop {step_id!r}: {output!r} is not an output of its body",
            f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(own)}")
    required, optional = _external(body, own, until)
    loop = LoopBody(Pipeline(step_id, parsed.step.location.path, None, tuple(body)),
                    wire_steps(tuple(body), ordered=True), spec.loop.max_iterations, until, spec.loop.on_exhausted,
                    output, frozenset(backward), tuple(dict.fromkeys([*required, *optional])))
    when = _expression(parsed, "when", spec.when, names, add) if spec.when is not None else None
    waits_for = tuple(n for n in (when.names if when else ()) if n not in required and n not in optional)
    return replace(parsed.step, inputs=tuple(required), optional_inputs=tuple(optional),
                   control=Control(when=when, loop=loop, waits_for=waits_for))


def _external(body: list[Step], own: Mapping[str, Step], until: Expression | None) -> tuple[list[str], list[str]]:
    """The outside names the body reads: required when some body step needs them, else optional."""
    required: dict[str, None] = {}
    optional: dict[str, None] = {}
    for inner in body:
        for name in inner.dependencies:
            if name not in own:
                (required if inner.requires(name) else optional)[name] = None
    for name in until.names if until else ():
        if name not in own:
            required[name] = None
    return list(required), [name for name in optional if name not in required]


def _body_loc(parsed: Parsed, number: int) -> tuple[Any, ...]:
    return (*parsed.loc[1:], "loop", "steps", number)
