"""From steps to a dependency graph: producers, edges, cycles and shape."""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from .spec import Pipeline, Step


@dataclass
class PipelineGraph:
    """The DAG of one pipeline plus the lookups the scheduler needs on its hot path."""

    pipeline: Pipeline
    graph: nx.DiGraph
    steps: dict[str, Step] = field(init=False)
    producers: dict[str, str] = field(init=False)  # output_name -> step id
    successors: dict[str, list[str]] = field(init=False)
    predecessor_count: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.steps = {step.id: step for step in self.pipeline.steps}
        self.producers = {step.output_name: step.id for step in self.pipeline.steps}
        self.successors = {node: list(self.graph.successors(node)) for node in self.graph.nodes}
        self.predecessor_count = {node: self.graph.in_degree(node) for node in self.graph.nodes}

    def summary(self) -> GraphSummary:
        layers = list(nx.topological_generations(self.graph))
        return GraphSummary(
            steps=self.graph.number_of_nodes(),
            edges=self.graph.number_of_edges(),
            widest_layer=max((len(layer) for layer in layers), default=0),
            longest_chain=nx.dag_longest_path_length(self.graph) + 1 if self.graph.number_of_nodes() else 0,
        )

    def descendants(self, step_id: str) -> set[str]:
        return nx.descendants(self.graph, step_id)

    def sinks(self) -> list[str]:
        """Steps nobody consumes: the pipeline's results, in file order."""
        return [step.id for step in self.pipeline.steps if not self.successors[step.id]]


@dataclass(frozen=True)
class GraphSummary:
    steps: int
    edges: int
    widest_layer: int
    longest_chain: int

    def __str__(self) -> str:
        return (f"{self.steps} steps, {self.edges} edges, widest parallel layer {self.widest_layer}, "
                f"longest chain {self.longest_chain}")


def wire_steps(steps: tuple[Step, ...]) -> nx.DiGraph:
    """An edge from each input's producer to its consumer; unknown inputs are left to the validator."""
    producers = {step.output_name: step.id for step in steps}
    graph = nx.DiGraph()
    graph.add_nodes_from(step.id for step in steps)
    for step in steps:
        for name in step.all_inputs:
            if name in producers:
                graph.add_edge(producers[name], step.id)
    return graph


def find_cycle(graph: nx.DiGraph) -> list[str] | None:
    """The steps of one cycle in order, or None when the graph is acyclic."""
    try:
        edges = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return None
    return [edge[0] for edge in edges]
