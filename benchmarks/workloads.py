"""The benchmark DAGs, shared by every engine, and the reference each engine's outputs must equal.

A node's work is what the `echo` provider does for a chameleon step: build the user message from
its inputs (each under a `## name` heading, then the supplement) and reply
`[echo <model>] <first 200 characters>`. Every engine computes exactly this, so data really flows
through the edges and each run's outputs can be compared with `reference_outputs` node by node.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

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

    @property
    def steps(self) -> int:
        return len(self.nodes)


def user_message(inputs: list[tuple[str, str]], supplement: str | None) -> str:
    """As orchestrai.modules.chameleon.user_message for text inputs."""
    parts = [f"## {name}\n{value}" for name, value in inputs]
    if supplement:
        parts.append(f"## supplement\n{supplement}")
    return "\n\n".join(parts)


def echo_reply(inputs: list[tuple[str, str]], supplement: str | None) -> str:
    """What the echo provider answers a chameleon step with these inputs."""
    return f"[echo {MODEL}] {user_message(inputs, supplement)[:REPLY_CHARS]}"


def reference_outputs(workload: Workload) -> dict[str, str]:
    """Every node's output, computed sequentially with no engine at all."""
    out: dict[str, str] = {}
    for node in workload.nodes:
        out[node.name] = echo_reply([(p, out[p]) for p in node.parents], node.supplement)
    return out


def sinks(workload: Workload) -> list[str]:
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
    if name == "http":
        width, latency = (25, 0.02) if quick else (1000, 0.1)
        return Workload(name, two_waves(width), latency, None, 2 * latency,
                        f"2 waves of {width} calls in flight, openai SDK -> loopback, {latency * 1000:g} ms")
    raise ValueError(f"unknown workload {name!r}")


DAG_WORKLOADS = ("chain", "wide", "wide-capped", "layered", "huge")
