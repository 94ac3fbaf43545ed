"""The fan-out and loop workloads in LangGraph's graph API, with the nodes' work of every other engine.

fanout: LangGraph's map-reduce. The source node's conditional edge returns one `Send` per item to
the item node, whose one-element list is merged into `findings` by the documented `operator.add`
reducer; the sink runs once every item is in. loop: the body's nodes in a line, and a conditional
edge from the last back to the first until `repeat` iterations are done (the `until` check is the
same string comparison the floor makes); each node appends its output to a `history` list.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from floor import Work, make_items
from workloads import Workload, as_text


class FanoutState(TypedDict, total=False):
    topics: list[str]
    findings: Annotated[list[str], operator.add]  # the items' outputs, in Send order
    summary: str


class ItemState(TypedDict):
    topic: str


def build_fanout_graph(workload: Workload, work: Work) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    source, item, sink = workload.nodes
    name = item.parents[0]

    async def plan(state: FanoutState) -> FanoutState:
        return {"topics": await make_items(workload.repeat)}

    def spread(state: FanoutState) -> list[Any]:  # Sends (LangGraph reads these hints at run time)
        return [Send(item.name + "_", {"topic": topic}) for topic in state["topics"]]

    async def one(state: ItemState) -> FanoutState:
        return {"findings": [await work(item, [(name, state["topic"])])]}

    async def summarize(state: FanoutState) -> FanoutState:
        return {"summary": await work(sink, [(item.name, as_text(state["findings"]))])}

    builder = StateGraph(FanoutState)  # node names end in "_": a node may not share a state key's name
    builder.add_node(source.name + "_", plan)
    builder.add_node(item.name + "_", one)
    builder.add_node(sink.name + "_", summarize)
    builder.add_edge(START, source.name + "_")
    builder.add_conditional_edges(source.name + "_", spread, [item.name + "_"])
    builder.add_edge(item.name + "_", sink.name + "_")
    builder.add_edge(sink.name + "_", END)
    return builder.compile()


class LoopState(TypedDict, total=False):
    draft: str
    critique: str
    iteration: int
    history: Annotated[list[str], operator.add]  # every body output in order: draft 1, critique 1, ...


def build_loop_graph(workload: Workload, work: Work) -> Any:
    from langgraph.graph import END, START, StateGraph

    writer, critic = workload.nodes

    async def write(state: LoopState) -> LoopState:
        critique = state.get("critique")
        draft = await work(writer, [] if critique is None else [(writer.parents[0], critique)])
        return {"draft": draft, "history": [draft]}

    async def criticize(state: LoopState) -> LoopState:
        critique = await work(critic, [(critic.parents[0], state["draft"])])
        return {"critique": critique, "iteration": state.get("iteration", 0) + 1, "history": [critique]}

    def again(state: LoopState) -> str:
        done = state["iteration"] >= workload.repeat or state["critique"] == "stop"  # `until` never holds
        return END if done else writer.name

    builder = StateGraph(LoopState)
    builder.add_node(writer.name + "_", write)
    builder.add_node(critic.name + "_", criticize)
    builder.add_edge(START, writer.name + "_")
    builder.add_edge(writer.name + "_", critic.name + "_")
    builder.add_conditional_edges(critic.name + "_", again, {writer.name: writer.name + "_", END: END})
    return builder.compile()


async def run_fanout_langgraph(graph: Any) -> dict[str, Any]:
    state = await graph.ainvoke({}, config={"recursion_limit": 1_000_000})
    return {"topics": state["topics"], "findings": state["findings"], "summary": state["summary"]}


async def run_loop_langgraph(graph: Any, workload: Workload) -> list[tuple[str, ...]]:
    # One superstep per body node run: 2 per iteration, plus a margin.
    state = await graph.ainvoke({}, config={"recursion_limit": 2 * workload.repeat + 10})
    history = state["history"]
    width = len(workload.nodes)
    return [tuple(history[i:i + width]) for i in range(0, len(history), width)]
