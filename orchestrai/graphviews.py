"""A pipeline's DAG before any run, as text, Mermaid, Graphviz DOT or SVG (`orchestrai graph`).

The top-level steps are the nodes; a fan-out, a loop or a sub-pipeline is one node with a note saying
what it does (`foreach plan.topics`, `loop ≤4: draft, review`, `pipeline: research.yml`), and so is a
`when`. Parallel groups are `plan_review.parallel_groups` (the plan review shows the same line).

Every format escapes what the YAML gave it (`when` expressions hold quotes and `<`): Mermaid labels
use its `#quot;`-style entity codes with node ids of our own (`n0`, `n1`), DOT quotes every id and
label, the SVG is `observe.dag`. `--graphviz` hands the DOT text to the `dot` binary when it is on
PATH, and says so plainly when it is not: no silent fallback, the caller asked for Graphviz.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

from .errors import MissingExtraError, OrchestraiError
from .observe.dag import DagNode, render_svg
from .pipeline.graph import PipelineGraph
from .pipeline.spec import Step
from .plan_review import parallel_groups

Format = Literal["text", "mermaid", "dot", "svg"]
FORMATS: tuple[Format, ...] = ("text", "mermaid", "dot", "svg")


@dataclass(frozen=True)
class PipelineView:
    """What every format draws: the pipeline's name, one node per top-level step, the edges."""

    name: str
    nodes: tuple[DagNode, ...]
    edges: tuple[tuple[str, str], ...]
    groups: str  # `1: [request]  2: [a, b]  3: [join]`


def pipeline_view(graph: PipelineGraph) -> PipelineView:
    nodes = tuple(DagNode(step.id, step.id, note=step_note(step)) for step in graph.pipeline.steps)
    edges = tuple((source, target) for source, targets in graph.successors.items() for target in targets)
    return PipelineView(graph.pipeline.name, nodes, edges, parallel_groups(graph))


def step_note(step: Step) -> str | None:
    """What a node says besides its id: its module, or what its control does (folded into one node)."""
    control = step.control
    parts: list[str] = []
    if control is not None and control.loop is not None:
        body = ", ".join(inner.id for inner in control.loop.pipeline.steps)
        parts.append(f"loop ≤{control.loop.max_iterations}: {body}")
    elif control is not None and control.pipeline is not None:
        parts.append(f"pipeline: {control.pipeline.path}")
    elif step.module != step.id:
        parts.append(step.module)
    if control is not None and control.foreach is not None:
        parts.append(f"foreach {control.foreach}")
    if control is not None and control.when is not None:
        parts.append(f"when {control.when.source}")
    if step.tools is not None and step.tools.uses:
        parts.append("tools: " + ", ".join(use.name for use in step.tools.uses))
    return "; ".join(parts) or None


def as_text(view: PipelineView) -> str:
    """The parallel groups on one line, then each edge on its own (`a -> b`), then the notes."""
    lines = [view.groups, *(f"{source} -> {target}" for source, target in view.edges)]
    lines += (f"{node.id}: {node.note}" for node in view.nodes if node.note)
    return "\n".join(lines) + "\n"


def as_mermaid(view: PipelineView) -> str:
    """`flowchart LR`, node ids of our own (ids may hold dots and dashes), labels quoted and escaped."""
    ids = {node.id: f"n{index}" for index, node in enumerate(view.nodes)}
    lines = ["flowchart LR"]
    for node in view.nodes:
        label = _mermaid_text(node.label) + (f"<br/><small>{_mermaid_text(node.note)}</small>" if node.note else "")
        lines.append(f'    {ids[node.id]}["{label}"]')
    lines += (f"    {ids[source]} --> {ids[target]}" for source, target in view.edges)
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: its entity codes for what would end the label or read as HTML."""
    text = " ".join(text.split())
    return "".join(_MERMAID_CODES.get(char, char) for char in text)


_MERMAID_CODES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;", "|": "#124;",
                  "[": "#91;", "]": "#93;", "{": "#123;", "}": "#125;", "(": "#40;", ")": "#41;"}


def as_dot(view: PipelineView) -> str:
    """A Graphviz digraph, left to right, every id and label a quoted string."""
    lines = [f"digraph {_dot_string(view.name)} {{", "    rankdir=LR;",
             '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];']
    for node in view.nodes:
        label = _dot_text(node.label) + (r"\n" + _dot_text(node.note) if node.note else "")
        lines.append(f'    {_dot_string(node.id)} [label="{label}"];')
    lines += (f"    {_dot_string(source)} -> {_dot_string(target)};" for source, target in view.edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    # In a DOT label a backslash starts an escape (\n, \l, \N): a literal one is doubled.
    return " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"')


def _dot_string(text: str) -> str:
    # In a quoted DOT id only `\"` is an escape (a backslash stays as it is): quotes escaped, and a
    # backslash doubled so it can never escape our closing quote (valid step ids hold neither).
    return '"' + " ".join(text.split()).replace("\\", "\\\\").replace('"', '\\"') + '"'


def as_svg(view: PipelineView) -> str:
    return render_svg(view.nodes, view.edges, title=view.name)


def graphviz_svg(dot_text: str, *, dot: str | None = None, timeout_s: float = 60.0) -> str:
    """The DOT text laid out by Graphviz's `dot -Tsvg`; MissingExtraError when `dot` is not on PATH."""
    binary = dot or shutil.which("dot")
    if binary is None:
        raise MissingExtraError("--graphviz needs Graphviz's `dot` on PATH, and it is not there",
                                hint="install Graphviz (apt-get install graphviz, brew install graphviz), "
                                     "or leave out --graphviz: orchestrai draws the SVG itself")
    try:
        done = subprocess.run([binary, "-Tsvg"], input=dot_text.encode("utf-8"), capture_output=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise OrchestraiError(f"`dot -Tsvg` took more than {timeout_s:.0f} s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OrchestraiError(f"`dot -Tsvg` failed: {message[0] if message else f'exit {done.returncode}'}")
    return done.stdout.decode("utf-8")


def render(graph: PipelineGraph, fmt: Format, *, graphviz: bool = False) -> str:
    """The pipeline in one format; svg drawn by `observe.dag`, or by Graphviz when `graphviz`."""
    view = pipeline_view(graph)
    if fmt == "text":
        return as_text(view)
    if fmt == "mermaid":
        return as_mermaid(view)
    if fmt == "dot":
        return as_dot(view)
    return graphviz_svg(as_dot(view)) if graphviz else as_svg(view)


_SUFFIXES: dict[str, Format] = {".svg": "svg", ".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid",
                                ".txt": "text"}


def choose_format(fmt: str | None, output: str | None, graphviz: bool) -> Format:
    """The format asked for; else the output file's suffix says (`.svg`, `.dot`, `.mmd`), else svg with
    --graphviz, else text. A format that cannot be (unknown, or not svg with --graphviz): InputError."""
    from .errors import InputError

    if fmt is None:
        suffix = output[output.rfind("."):].lower() if output and "." in output else ""
        fmt = _SUFFIXES.get(suffix, "svg" if graphviz else "text")
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", hint="use one of: " + ", ".join(FORMATS))
    if graphviz and fmt != "svg":
        raise InputError(f"--graphviz draws SVG, not {fmt}", hint="use --format svg (or leave --format out)")
    return fmt
