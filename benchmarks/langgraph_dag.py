"""The same DAGs in LangGraph's graph API (installed only for benchmarks: pip install -e ".[bench]").

Edges are the DAG's edges; a node with several parents is joined with `add_edge([parent, ...], node)`,
which makes it wait for ALL of them (LangGraph's documented join). The nodes do the same work as the
other engines. The state is one dict of outputs merged by a reducer (`operator.or_`): of the three
layouts tried (one state key per node; the same with a per-node `input_schema` of its parents' keys;
this one) it was the fastest and leanest, e.g. chain 0.6 s against 1.8 s and 2.1 s.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from floor import Work
from workloads import Node


class State(TypedDict, total=False):
    outputs: Annotated[dict[str, str], operator.or_]  # node name -> its output


def build_graph(nodes: tuple[Node, ...], work: Work) -> Any:
    """A compiled StateGraph running `work` for every node."""
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(State)
    consumed: set[str] = set()
    for node in nodes:
        builder.add_node(node.name, _action(node, work))
        if not node.parents:
            builder.add_edge(START, node.name)
        else:
            builder.add_edge(node.parents[0] if len(node.parents) == 1 else list(node.parents), node.name)
        consumed.update(node.parents)
    for node in nodes:
        if node.name not in consumed:
            builder.add_edge(node.name, END)
    return builder.compile()


def _action(node: Node, work: Work) -> Any:
    async def action(state: State) -> State:
        outputs = state["outputs"]
        return {"outputs": {node.name: await work(node, [(p, outputs[p]) for p in node.parents])}}

    action.__name__ = node.name
    return action


async def run_langgraph(graph: Any, max_concurrency: int | None) -> dict[str, str]:
    """Invoke once; the final state holds every node's output."""
    config: dict[str, Any] = {"recursion_limit": 1_000_000}
    if max_concurrency:
        config["max_concurrency"] = max_concurrency
    state = await graph.ainvoke({"outputs": {}}, config=config)
    return state["outputs"]
