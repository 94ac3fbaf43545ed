"""The pipeline graph's own algorithms agree with networkx's on random graphs, cyclic ones included."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from orchestrai.pipeline.graph import PipelineGraph, as_networkx, find_cycle, topological_layers, wire_steps
from orchestrai.pipeline.spec import Pipeline, Step


def random_successors(seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    size = rng.randint(1, 30)
    successors: dict[str, list[str]] = {f"n{i}": [] for i in range(size)}
    for i in range(size):
        for j in rng.sample(range(size), min(size, rng.randint(0, 3))):
            if (j > i or seed % 3 == 0) and f"n{j}" not in successors[f"n{i}"]:  # every third graph may have cycles
                successors[f"n{i}"].append(f"n{j}")
    return successors


@pytest.mark.parametrize("seed", range(150))
def test_layers_cycles_and_descendants_match_networkx(seed: int) -> None:
    successors = random_successors(seed)
    graph = as_networkx(successors)
    if not nx.is_directed_acyclic_graph(graph):
        assert topological_layers(successors) is None
        assert find_cycle(successors) == [edge[0] for edge in nx.find_cycle(graph)]
        return
    layers = topological_layers(successors)
    assert layers is not None and find_cycle(successors) is None
    assert [sorted(layer) for layer in layers] == [sorted(layer) for layer in nx.topological_generations(graph)]
    steps = tuple(Step(id=name, module="m", output_name=name,
                       inputs=tuple(p for p in successors if name in successors[p]),
                       supplement=None, model_settings={}, options={}, index=i) for i, name in enumerate(successors))
    pipeline_graph = PipelineGraph(Pipeline("p", "p.yml", None, steps))
    assert pipeline_graph.successors == wire_steps(steps)
    assert {k: sorted(v) for k, v in pipeline_graph.successors.items()} == {k: sorted(v) for k, v in successors.items()}
    assert pipeline_graph.predecessor_count == dict(graph.in_degree())
    summary = pipeline_graph.summary()
    assert (summary.steps, summary.edges) == (graph.number_of_nodes(), graph.number_of_edges())
    assert summary.longest_chain == nx.dag_longest_path_length(graph) + 1
    for node in successors:
        assert pipeline_graph.descendants(node) == nx.descendants(graph, node)
    assert set(pipeline_graph.graph.edges) == set(graph.edges)
