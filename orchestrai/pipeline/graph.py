"""From steps to a dependency graph: producers, edges, cycles and shape.

Plain dicts of successor lists, not networkx: importing networkx took 0.25-0.4 s of every
`orchestrai validate` and `run`, and the few algorithms needed here (Kahn's layers, reachability)
are a dozen lines each. networkx is still used to name the steps of a cycle (an error, so rare) and
behind `PipelineGraph.graph` for anyone who wants its algorithms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .spec import Pipeline, Step, Successors

if TYPE_CHECKING:
    import networkx as nx



@dataclass
class PipelineGraph:
    """The DAG of one pipeline plus the lookups the scheduler needs on its hot path."""

    pipeline: Pipeline
    successors: Successors = field(default_factory=dict)  # computed from the steps when not given
    steps: dict[str, Step] = field(init=False)
    producers: dict[str, str] = field(init=False)  # output_name -> step id
    predecessor_count: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.steps = {step.id: step for step in self.pipeline.steps}
        self.producers = {step.output_name: step.id for step in self.pipeline.steps}
        if not self.successors:
            self.successors = wire_steps(self.pipeline.steps)
        self.predecessor_count = in_degrees(self.successors)

    @cached_property
    def graph(self) -> nx.DiGraph[str]:
        """The same DAG as a networkx DiGraph (imported on first use), for its graph algorithms."""
        return as_networkx(self.successors)

    def summary(self) -> GraphSummary:
        layers = topological_layers(self.successors) or []
        return GraphSummary(
            counts=summary_counts(self.pipeline.steps),
            steps=len(self.successors),
            edges=sum(len(targets) for targets in self.successors.values()),
            widest_layer=max((len(layer) for layer in layers), default=0),
            # The longest path ends in the last layer: a step's layer is the longest chain up to it.
            longest_chain=len(layers),
        )

    def descendants(self, step_id: str) -> set[str]:
        found: set[str] = set()
        todo = [step_id]
        while todo:
            for successor in self.successors[todo.pop()]:
                if successor not in found:
                    found.add(successor)
                    todo.append(successor)
        return found

    def sinks(self) -> list[str]:
        """Steps nobody consumes: the pipeline's results, in file order."""
        return [step.id for step in self.pipeline.steps if not self.successors[step.id]]


@dataclass(frozen=True)
class GraphSummary:
    steps: int
    edges: int
    widest_layer: int
    longest_chain: int
    counts: dict[str, int] = field(default_factory=dict)  # fan-outs, conditions, loops, sub-pipelines

    def __str__(self) -> str:
        text = (f"{self.steps} steps, {self.edges} edges, widest parallel layer {self.widest_layer}, "
                f"longest chain {self.longest_chain}")
        extra = [f"{count} {what}{'s' if count != 1 else ''}" for what, count in self.counts.items() if count]
        return text + (", " + ", ".join(extra) if extra else "")


def start_inputs(pipeline: Pipeline) -> list[str]:
    """The run inputs a pipeline's start_module steps read (their output_names), in file order."""
    return [step.output_name for step in pipeline.steps if step.module == "start_module"]


def summary_counts(steps: tuple[Step, ...]) -> dict[str, int]:
    """How many fan-outs, conditions, loops and sub-pipelines a file has (loop bodies included)."""
    counts = {"fan-out": 0, "condition": 0, "loop": 0, "sub-pipeline": 0}
    todo = list(steps)
    while todo:
        control = todo.pop().control
        if control is None:
            continue
        counts["fan-out"] += control.foreach is not None
        counts["condition"] += control.when is not None
        counts["sub-pipeline"] += control.pipeline is not None
        if control.loop is not None:
            counts["loop"] += 1
            todo += control.loop.pipeline.steps
    return counts


def wire_steps(steps: tuple[Step, ...], *, ordered: bool = False) -> Successors:
    """An edge from each input's producer to its consumer; unknown inputs are left to the validator.

    `ordered` (a loop body): only producers written before the consumer; a name produced by the same
    or a later step is the previous iteration's value, not an edge.
    """
    producers = {step.output_name: step for step in steps}
    successors: dict[str, dict[str, None]] = {step.id: {} for step in steps}  # dicts: ordered sets of targets
    for step in steps:
        for name in step.dependencies:
            producer = producers.get(name)
            if producer is not None and (not ordered or producer.index < step.index):
                successors[producer.id][step.id] = None
    return {step_id: list(targets) for step_id, targets in successors.items()}


def in_degrees(successors: Successors) -> dict[str, int]:
    counts = dict.fromkeys(successors, 0)
    for targets in successors.values():
        for target in targets:
            counts[target] += 1
    return counts


def topological_layers(successors: Successors) -> list[list[str]] | None:
    """Kahn's algorithm in layers: steps with no inputs, then those whose inputs are all in earlier
    layers, and so on (networkx's topological_generations). None when the steps form a cycle."""
    waiting = in_degrees(successors)
    layer = [step_id for step_id, count in waiting.items() if count == 0]
    layers, placed = [], 0
    while layer:
        layers.append(layer)
        placed += len(layer)
        following = []
        for step_id in layer:
            for successor in successors[step_id]:
                waiting[successor] -= 1
                if waiting[successor] == 0:
                    following.append(successor)
        layer = following
    return layers if placed == len(successors) else None


def find_cycle(successors: Successors) -> list[str] | None:
    """The steps of one cycle in order, or None when the graph is acyclic."""
    # A linear check first: nx.find_cycle re-explores shared descendants from every node, which
    # took 28 s on a 10,000-step pipeline. Only a pipeline that has a cycle pays for naming it.
    if topological_layers(successors) is not None:
        return None
    import networkx as nx

    return [edge[0] for edge in nx.find_cycle(as_networkx(successors))]


def as_networkx(successors: Successors) -> nx.DiGraph[str]:
    """A networkx DiGraph with the same nodes and edges, added in the same order."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(successors)
    graph.add_edges_from((step_id, target) for step_id, targets in successors.items() for target in targets)
    return graph
