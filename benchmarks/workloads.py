"""The benchmark workloads, shared by every engine, and the reference each engine's outputs must equal.

A node's work is what the `echo` provider does for a chameleon step: build the user message from
its inputs (each under a `## name` heading, then the supplement) and reply
`[echo <model>] <first 200 characters>`. Every engine computes exactly this, so data really flows
through the edges and each run's outputs can be compared with `reference_outputs` node by node.

Besides DAGs there are two control-flow shapes (issue 11): `fanout` (a source step returns a list,
one step runs per item, a last step reads the list of results) and `loop` (a body of steps run
again and again, a later step's output feeding the first step of the next iteration). Their
references are keyed like orchestrai's records: `findings[3]` for an item, `refine#2/draft` for a
body step of iteration 2, and the fan-out step / loop under its own id.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

MODEL = "bench"
REPLY_CHARS = 200  # as orchestrai.providers.echo.REPLY_CHARS


@dataclass(frozen=True)
class Node:
    name: str  # also the step id and output_name in orchestrai
    parents: tuple[str, ...]
    supplement: str | None = None


@dataclass(frozen=True)
class Workload:
    name: str
    nodes: tuple[Node, ...]  # in an order where parents come first
    latency_s: float  # simulated model latency of every node
    max_concurrency: int | None  # None: no cap
    ideal_s: float  # the wall time with zero overhead
    description: str
    # "dag": nodes are the graph. "fanout": nodes are (source, per-item step, sink), `repeat` items.
    # "loop": nodes are the body, run `repeat` times.
    shape: str = "dag"
    repeat: int = 1

    @property
    def steps(self) -> int:
        """Module runs: what orchestrai makes a step record for (besides a fan-out's or loop's own)."""
        if self.shape == "fanout":
            return self.repeat + 2
        return len(self.nodes) * self.repeat

    @property
    def unit(self) -> str:
        """What the overhead is divided by: a step, a fan-out item or a loop iteration."""
        return {"dag": "step", "fanout": "item", "loop": "iteration"}[self.shape]

    @property
    def units(self) -> int:
        return self.steps if self.shape == "dag" else self.repeat


def user_message(inputs: list[tuple[str, str]], supplement: str | None) -> str:
    """As orchestrai.modules.chameleon.user_message for text inputs."""
    parts = [f"## {name}\n{value}" for name, value in inputs]
    if supplement:
        parts.append(f"## supplement\n{supplement}")
    return "\n\n".join(parts)


def echo_reply(inputs: list[tuple[str, str]], supplement: str | None) -> str:
    """What the echo provider answers a chameleon step with these inputs."""
    return f"[echo {MODEL}] {user_message(inputs, supplement)[:REPLY_CHARS]}"


def as_text(value: Any) -> str:
    """An input as the chameleon module shows it in the user message (as chameleon._as_text)."""
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


ITEM_TEXT = "topic {i}"  # the fan-out source's items; orchestrai's source module builds the same strings
LOOP_ID = "refine"


def fanout_items(count: int) -> list[str]:
    return [ITEM_TEXT.format(i=i) for i in range(count)]


def reference_outputs(workload: Workload) -> dict[str, Any]:
    """Every node's (item's, iteration's) output, computed sequentially with no engine at all."""
    if workload.shape == "fanout":
        return reference_fanout(workload)
    if workload.shape == "loop":
        return reference_loop(workload)
    out: dict[str, Any] = {}
    for node in workload.nodes:
        out[node.name] = echo_reply([(p, out[p]) for p in node.parents], node.supplement)
    return out


def reference_fanout(workload: Workload) -> dict[str, Any]:
    source, item, sink = workload.nodes
    items = fanout_items(workload.repeat)
    out: dict[str, Any] = {source.name: items}
    results = [echo_reply([(item.parents[0], topic)], item.supplement) for topic in items]
    out.update({f"{item.name}[{i}]": result for i, result in enumerate(results)})
    out[item.name] = results
    out[sink.name] = echo_reply([(item.name, as_text(results))], sink.supplement)
    return out


def reference_loop(workload: Workload) -> dict[str, Any]:
    """A parent made by the same or a later body node is the previous iteration's (absent in the first)."""
    out: dict[str, Any] = {}
    last: dict[str, str] = {}
    for iteration in range(1, workload.repeat + 1):
        current: dict[str, str] = {}
        for node in workload.nodes:
            inputs = [(p, current[p] if p in current else last[p]) for p in node.parents if p in current or p in last]
            current[node.name] = out[f"{LOOP_ID}#{iteration}/{node.name}"] = echo_reply(inputs, node.supplement)
        last = current
    out[LOOP_ID] = last[workload.nodes[-1].name]
    return out


def fanout_outputs(out: dict[str, Any], workload: Workload) -> dict[str, Any]:
    """An engine's {source, item step, sink} outputs, plus each item's under `findings[i]` as orchestrai records it.

    Engines call this after the timed run: it is the comparison's layout, not the engine's work.
    """
    name = workload.nodes[1].name
    return out | {f"{name}[{i}]": result for i, result in enumerate(out[name])}


def loop_outputs(rows: list[tuple[str, ...]], workload: Workload) -> dict[str, Any]:
    """Each iteration's body outputs (in body order) keyed like orchestrai's records (`refine#2/draft`)."""
    out: dict[str, Any] = {f"{LOOP_ID}#{i}/{node.name}": value for i, values in enumerate(rows, start=1)
                           for node, value in zip(workload.nodes, values, strict=True)}
    out[LOOP_ID] = rows[-1][-1] if rows else None
    return out


def sinks(workload: Workload) -> list[str]:
    """The outputs nobody consumes (keys of `reference_outputs`): the run's result."""
    if workload.shape == "fanout":
        return [workload.nodes[-1].name]
    if workload.shape == "loop":
        return [LOOP_ID]
    consumed = {p for node in workload.nodes for p in node.parents}
    return [node.name for node in workload.nodes if node.name not in consumed]


def chain(n: int) -> tuple[Node, ...]:
    nodes = [Node("s0", (), supplement="seed")]
    nodes += [Node(f"s{i}", (f"s{i - 1}",)) for i in range(1, n)]
    return tuple(nodes)


def wide(width: int) -> tuple[Node, ...]:
    """1 -> width in parallel -> 1 join that needs all of them."""
    middle = [Node(f"w{i}", ("src",)) for i in range(width)]
    return (Node("src", (), supplement="seed"), *middle, Node("join", tuple(m.name for m in middle)))


def layered(layers: int, width: int, parents: int, seed: int) -> tuple[Node, ...]:
    """`layers` x `width`; each node past the first layer needs `parents` random nodes of the layer before."""
    rng = random.Random(seed)
    nodes = [Node(f"l0_{i}", (), supplement=f"seed {i}") for i in range(width)]
    for layer in range(1, layers):
        previous = [f"l{layer - 1}_{i}" for i in range(width)]
        nodes += [Node(f"l{layer}_{i}", tuple(rng.sample(previous, parents))) for i in range(width)]
    return tuple(nodes)


def two_waves(width: int) -> tuple[Node, ...]:
    """`width` independent calls, then `width` more each needing one of the first (connection reuse)."""
    first = [Node(f"a{i}", (), supplement=f"call {i}") for i in range(width)]
    return (*first, *(Node(f"b{i}", (f"a{i}",)) for i in range(width)))


def build(name: str, *, quick: bool = False) -> Workload:
    """The workload called `name`; `quick` shrinks it to ~50 steps with short latencies (smoke tests)."""
    if name == "chain":
        n = 50 if quick else 1000
        return Workload(name, chain(n), 0.0, None, 0.0, f"{n} steps in a line, 0 s")
    if name in ("wide", "wide-capped"):
        width, latency = (48, 0.005) if quick else (1000, 0.05)
        cap = (8 if quick else 50) if name == "wide-capped" else None
        rounds = math.ceil(width / cap) if cap else 1
        what = f"at most {cap} in flight" if cap else "no cap"
        return Workload(name, wide(width), latency, cap, latency * (2 + rounds),
                        f"1 -> {width} -> 1, {latency * 1000:g} ms, {what}")
    if name == "layered":
        layers, width, latency = (5, 10, 0.002) if quick else (20, 100, 0.01)
        return Workload(name, layered(layers, width, 3, seed=7), latency, None, layers * latency,
                        f"{layers} x {width}, 3 random parents (seed 7), {latency * 1000:g} ms")
    if name == "huge":
        layers, width = (5, 10) if quick else (100, 100)
        return Workload(name, layered(layers, width, 3, seed=7), 0.0, None, 0.0,
                        f"{layers * width} steps, {layers} x {width} layered, 0 s")
    if name == "fanout":
        count = 20 if quick else 10_000
        # The item step's one parent is its `as:` name: each item arrives under it.
        fan = (Node("topics", ()), Node("findings", ("topic",)), Node("summary", ("findings",)))
        return Workload(name, fan, 0.0, None, 0.0, f"1 -> {count:,} items (foreach) -> 1, 0 s",
                        shape="fanout", repeat=count)
    if name == "loop":
        iterations = 5 if quick else 1000
        # The writer's parent comes later in the body: the previous iteration's critique.
        body = (Node("draft", ("critique",), supplement="draft it"),
                Node("critique", ("draft",), supplement="criticize"))
        return Workload(name, body, 0.0, None, 0.0, f"{iterations:,} iterations of writer -> critic, 0 s",
                        shape="loop", repeat=iterations)
    if name == "http":
        width, latency = (25, 0.02) if quick else (1000, 0.1)
        return Workload(name, two_waves(width), latency, None, 2 * latency,
                        f"2 waves of {width} calls in flight, openai SDK -> loopback, {latency * 1000:g} ms")
    raise ValueError(f"unknown workload {name!r}")


DAG_WORKLOADS = ("chain", "wide", "wide-capped", "layered", "huge")
CONTROL_WORKLOADS = ("fanout", "loop")  # issue 11: foreach and loop
