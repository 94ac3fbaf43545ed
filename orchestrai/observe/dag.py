"""A DAG drawn as a standalone SVG, by us: no Graphviz, no JavaScript, no third-party import.

Used by `orchestrai graph --format svg` (a pipeline before any run) and by the HTML report (a stored
run, statuses and times filled in). The layout is the classic layered one:

- layers: Kahn's algorithm (a node's column is the longest chain of predecessors before it), so a
  column is exactly a group of steps that can run at the same time;
- order within a column: input order, then barycenter sweeps (down with predecessors, up with
  successors) to cut edge crossings: cheap, O(edges) per sweep, good enough for pipelines;
- columns left to right, edges as cubic curves with arrowheads.

Labels come from untrusted YAML: every text is XML-escaped and stripped of the characters XML 1.0
cannot hold, and labels are capped (ellipsis) so a 200-step pipeline stays readable; the full id is
in each node's `<title>` (a tooltip). A folded node (a fan-out, a loop) carries its children in a
`<g class="children" data-parent="ID" style="display:none">` block drawn after every node (so it
lies on top when the HTML report shows it); without JavaScript the SVG simply shows the folded node.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NODE_WIDTH = 184
NODE_HEIGHT = 56
COLUMN_GAP = 64
ROW_GAP = 18
MARGIN = 20
TITLE_HEIGHT = 30
CHILD_HEIGHT = 22
MAX_LABEL = 24  # characters: ~7 px each at 12 px, inside NODE_WIDTH with padding
MAX_NOTE = 30
MAX_CHILDREN = 200  # rows of one children block; the rest is "... N more"

# (fill, stroke) per status; unknown statuses and "no status yet" (a pipeline before a run) are plain.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "completed": ("#c8ecd2", "#2f8f4e"),
    "cached": ("#dcf3e3", "#4caf6e"),
    "resumed": ("#e6f6d8", "#6aa84f"),
    "failed": ("#f8d0d0", "#c62828"),
    "skipped": ("#e8e8e8", "#8a8a8a"),
    "interrupted": ("#ffe2b8", "#e67e00"),
    "running": ("#d3e6fc", "#1e6fd0"),
    "pending": ("#ffffff", "#5b8def"),
}
PLAIN_COLOURS = ("#ffffff", "#555555")

# XML 1.0 forbids most control characters even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class DagNode:
    """One node to draw. `note` is a short line ("120 items, 2 failed", "3 iterations"); `children`
    are what a fan-out or loop folded into this node holds, shown when the report expands it."""

    id: str
    label: str
    status: str | None = None
    duration_s: float | None = None
    note: str | None = None
    children: tuple[DagNode, ...] = ()


def layers(node_ids: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """The nodes in Kahn layers (each layer's nodes need only nodes of earlier layers), each layer in
    input order. Edges naming unknown nodes are ignored; nodes on a cycle (never in a valid pipeline)
    go in one last layer rather than vanish."""
    position = {node_id: index for index, node_id in enumerate(node_ids)}
    successors: dict[str, list[str]] = {node_id: [] for node_id in position}
    waiting = dict.fromkeys(position, 0)
    for source, target in dict.fromkeys(edges):  # a repeated edge counts once
        if source in position and target in position and source != target:
            successors[source].append(target)
            waiting[target] += 1
    layer = [node_id for node_id in position if waiting[node_id] == 0]
    found: list[list[str]] = []
    placed = 0
    while layer:
        found.append(layer)
        placed += len(layer)
        following = []
        for node_id in layer:
            for target in successors[node_id]:
                waiting[target] -= 1
                if waiting[target] == 0:
                    following.append(target)
        layer = sorted(following, key=position.__getitem__)
    if placed < len(position):
        done = {node_id for group in found for node_id in group}
        found.append([node_id for node_id in position if node_id not in done])
    return found


def order_layers(groups: list[list[str]], edges: Sequence[tuple[str, str]], sweeps: int = 2) -> list[list[str]]:
    """The same layers reordered by barycenters to reduce crossings (ties keep the current order)."""
    groups = [list(group) for group in groups]
    predecessors: dict[str, list[str]] = {}
    successors: dict[str, list[str]] = {}
    for source, target in edges:
        predecessors.setdefault(target, []).append(source)
        successors.setdefault(source, []).append(target)

    def reorder(group: list[str], neighbours: dict[str, list[str]], rank: dict[str, float]) -> list[str]:
        def barycenter(item: tuple[int, str]) -> tuple[float, int]:
            index, node_id = item
            known = [rank[other] for other in neighbours.get(node_id, ()) if other in rank]
            return (sum(known) / len(known) if known else float(index), index)

        return [node_id for _, node_id in sorted(enumerate(group), key=barycenter)]

    for _ in range(sweeps):
        for neighbours, indices in ((predecessors, range(1, len(groups))),
                                    (successors, range(len(groups) - 2, -1, -1))):
            for index in indices:
                rank = _ranks(groups)
                groups[index] = reorder(groups[index], neighbours, rank)
    return groups


def _ranks(groups: list[list[str]]) -> dict[str, float]:
    """Each node's vertical position, centred so short columns compare with tall ones."""
    tallest = max((len(group) for group in groups), default=0)
    return {node_id: index + (tallest - len(group)) / 2
            for group in groups for index, node_id in enumerate(group)}


def render_svg(nodes: Sequence[DagNode], edges: Sequence[tuple[str, str]], *, title: str | None = None) -> str:
    """The DAG as a standalone SVG document (a string starting with `<svg xmlns=...>`)."""
    by_id = {node.id: node for node in nodes}
    drawn = [(source, target) for source, target in dict.fromkeys(edges)
             if source in by_id and target in by_id and source != target]
    layout = _Layout.of(order_layers(layers(list(by_id), drawn), drawn), drawn,
                        MARGIN + (TITLE_HEIGHT if title else 0))
    overlays = [_children_block(by_id[node_id], *layout.places[node_id]) for node_id in by_id
                if by_id[node_id].children]
    width, height = layout.width, max([layout.height, *(bottom for _, bottom in overlays)])
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" '
        'font-size="12">',
        '<defs><marker id="dag-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker></defs>',
    ]
    if title:
        parts.append(f'<text class="dag-title" x="{MARGIN}" y="{MARGIN + 14}" font-size="15" '
                     f'font-weight="600">{escape(_cap(title, 120))}</text>')
    parts.append('<g class="edges">')
    parts += (layout.edge(source, target) for source, target in drawn)
    parts.append('</g><g class="nodes">')
    parts += (_node(by_id[node_id], *layout.places[node_id]) for group in layout.groups for node_id in group)
    parts.append("</g>")
    parts += (block for block, _ in overlays)
    parts.append("</svg>")
    return "\n".join(parts)


LANE_GAP = 9  # between the lanes of edges that skip columns
MAX_LANES = 8


@dataclass
class _Layout:
    """Where each box goes. An edge that skips columns runs in a lane above the columns it passes, so it
    never hides behind the boxes of its row (a chain with shortcuts would draw them on top of each other)."""

    groups: list[list[str]]
    places: dict[str, tuple[float, float]]  # node id -> its box's top-left corner
    column: dict[str, int]
    tops: list[float]  # each column's highest box
    width: float
    height: float
    lanes: dict[tuple[str, str], int]

    @classmethod
    def of(cls, groups: list[list[str]], edges: list[tuple[str, str]], top: float) -> _Layout:
        column = {node_id: index for index, group in enumerate(groups) for node_id in group}
        long_edges = sorted((edge for edge in edges if column[edge[1]] - column[edge[0]] > 1),
                            key=lambda edge: column[edge[1]] - column[edge[0]])  # the longest in the highest lane
        lanes = {edge: index % MAX_LANES for index, edge in enumerate(long_edges)}
        top += LANE_GAP * (min(len(long_edges), MAX_LANES) + 1) if long_edges else 0
        tallest = max((len(group) for group in groups), default=0)
        column_height = max(tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP, 0)
        places: dict[str, tuple[float, float]] = {}
        tops = []
        for index, group in enumerate(groups):
            offset = (column_height - (len(group) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP)) / 2
            tops.append(top + offset)
            for row, node_id in enumerate(group):
                places[node_id] = (MARGIN + index * (NODE_WIDTH + COLUMN_GAP),
                                   top + offset + row * (NODE_HEIGHT + ROW_GAP))
        width = MARGIN * 2 + max(len(groups) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP, NODE_WIDTH)
        return cls(groups, places, column, tops, width, top + column_height + MARGIN, lanes)

    def edge(self, source: str, target: str) -> str:
        x1, y1 = self.places[source][0] + NODE_WIDTH, self.places[source][1] + NODE_HEIGHT / 2
        x2, y2 = self.places[target][0], self.places[target][1] + NODE_HEIGHT / 2
        lane = self.lanes.get((source, target))
        if lane is None:
            bend = max((x2 - x1) / 2, 24)
            path = f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        else:
            passed = self.tops[self.column[source] + 1:self.column[target]]
            y = min(passed) - LANE_GAP * (lane + 1)
            a, b = x1 + COLUMN_GAP / 2, x2 - COLUMN_GAP / 2
            path = (f"M{x1:.1f},{y1:.1f} C{a:.1f},{y1:.1f} {a - 12:.1f},{y:.1f} {a + 12:.1f},{y:.1f} "
                    f"L{b - 12:.1f},{y:.1f} C{b + 12:.1f},{y:.1f} {b:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")
        return (f'<path class="edge" data-from="{escape(source)}" data-to="{escape(target)}" d="{path}" '
                'fill="none" stroke="#888" stroke-width="1.3" marker-end="url(#dag-arrow)"/>')


def _node(node: DagNode, x: float, y: float) -> str:
    fill, stroke = STATUS_COLOURS.get(node.status or "", PLAIN_COLOURS)
    classes = "node folded" if node.children else "node"
    status = f' data-status="{escape(node.status)}"' if node.status else ""
    tooltip = node.id if node.label == node.id else f"{node.id}: {node.label}"
    if node.status:
        tooltip += f" ({node.status})"
    if node.note:
        tooltip += f"\n{node.note}"
    lines = [
        f'<g class="{classes}" data-step="{escape(node.id)}"{status}>',
        f"<title>{escape(tooltip)}</title>",
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{2.2 if node.children else 1.4}"/>',
        f'<text class="label" x="{x + 10:.1f}" y="{y + 18:.1f}" font-weight="600">'
        f"{escape(_cap(node.label, MAX_LABEL))}</text>",
    ]
    if node.duration_s is not None:
        lines.append(f'<text class="time" x="{x + NODE_WIDTH - 10:.1f}" y="{y + 35:.1f}" text-anchor="end" '
                     f'fill="#333">{escape(format_duration(node.duration_s))}</text>')
    if node.status:
        lines.append(f'<text class="status" x="{x + 10:.1f}" y="{y + 35:.1f}" fill="{stroke}">'
                     f"{escape(node.status)}</text>")
    note = node.note or (f"{len(node.children)} inside" if node.children else "")
    if note:
        lines.append(_note(note + (" ▸" if node.children else ""), x, y, two_lines=not node.status
                           and node.duration_s is None))
    lines.append("</g>")
    return "".join(lines)


def _note(note: str, x: float, y: float, *, two_lines: bool) -> str:
    """A node's note: its last line, or (nothing else to show: a pipeline before a run) its last two."""
    start = f'<text class="note" x="{x + 10:.1f}" y="{y + 50:.1f}" font-size="10.5" fill="#555">'
    note = " ".join(note.split())
    if two_lines:
        start = start.replace(f'y="{y + 50:.1f}"', f'y="{y + 36:.1f}"')
    if not two_lines or len(note) <= MAX_NOTE:
        return f"{start}{escape(_cap(note, MAX_NOTE))}</text>"
    cut = note.rfind(" ", 0, MAX_NOTE + 1)
    cut = cut if cut > MAX_NOTE // 2 else MAX_NOTE
    first, rest = note[:cut].rstrip(), note[cut:].lstrip()
    return (f'{start}<tspan x="{x + 10:.1f}">{escape(first)}</tspan>'
            f'<tspan x="{x + 10:.1f}" dy="14">{escape(_cap(rest, MAX_NOTE))}</tspan></text>')


def _children_block(node: DagNode, x: float, y: float) -> tuple[str, float]:
    """The hidden list of a folded node's children, under the node; and where it ends (its bottom)."""
    shown = node.children[:MAX_CHILDREN]
    rest = len(node.children) - len(shown)
    top = y + NODE_HEIGHT + 4
    rows = len(shown) + (1 if rest else 0)
    bottom = top + rows * CHILD_HEIGHT + 8
    parts = [f'<g class="children" data-parent="{escape(node.id)}" style="display:none">',
             f'<rect x="{x:.1f}" y="{top:.1f}" width="{NODE_WIDTH}" height="{bottom - top:.1f}" rx="4" '
             'fill="#fafafa" stroke="#999"/>']
    for index, child in enumerate(shown):
        row_y = top + 4 + index * CHILD_HEIGHT
        fill, stroke = STATUS_COLOURS.get(child.status or "", PLAIN_COLOURS)
        status = f' data-status="{escape(child.status)}"' if child.status else ""
        text = _cap(child.label, MAX_LABEL - 6)
        parts.append(
            f'<g class="child" data-step="{escape(child.id)}"{status}><title>{escape(_child_tooltip(child))}</title>'
            f'<rect x="{x + 4:.1f}" y="{row_y:.1f}" width="{NODE_WIDTH - 8}" height="{CHILD_HEIGHT - 3}" rx="3" '
            f'fill="{fill}" stroke="{stroke}"/>'
            f'<text x="{x + 10:.1f}" y="{row_y + 14:.1f}" font-size="11">{escape(text)}</text>'
            + (f'<text x="{x + NODE_WIDTH - 10:.1f}" y="{row_y + 14:.1f}" font-size="11" text-anchor="end">'
               f"{escape(format_duration(child.duration_s))}</text>" if child.duration_s is not None else "")
            + "</g>")
    if rest:
        parts.append(f'<text x="{x + 10:.1f}" y="{top + 4 + len(shown) * CHILD_HEIGHT + 14:.1f}" font-size="11" '
                     f'fill="#555">… {rest} more</text>')
    parts.append("</g>")
    return "".join(parts), bottom + MARGIN


def _child_tooltip(child: DagNode) -> str:
    text = child.id + (f" ({child.status})" if child.status else "")
    return text + (f"\n{child.note}" if child.note else "")


def format_duration(seconds: float) -> str:
    """`0.35 s`, `1.2 s`, `42.0 s`, `3 min 5 s`: short enough for a node."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _cap(text: str, limit: int) -> str:
    text = " ".join(text.split())  # newlines and tabs would not render in one <text> anyway
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """Text safe in XML content and in a double-quoted attribute."""
    text = _NOT_XML.sub("\ufffd", text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))
