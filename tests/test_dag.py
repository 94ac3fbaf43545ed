"""observe/dag.py: Kahn layers, the barycenter order, and an SVG that is well-formed whatever the labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from orchestrai.observe.dag import DagNode, format_duration, layers, order_layers, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def groups_of(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()]


def test_layers_of_a_diamond() -> None:
    assert layers(["a", "b", "c", "d"], [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]) == [["a"], ["b", "c"], ["d"]]


def test_layers_of_a_chain_and_a_wide_graph() -> None:
    assert layers(["a", "b", "c"], [("b", "c"), ("a", "b")]) == [["a"], ["b"], ["c"]]
    wide = [f"w{i}" for i in range(50)]
    assert layers(["start", *wide, "join"], [*(("start", w) for w in wide), *((w, "join") for w in wide)]) == [
        ["start"], wide, ["join"]]


def test_layers_keep_input_order_and_place_a_node_after_its_longest_chain() -> None:
    # z is listed first but needs a -> b; c has no inputs and is listed last.
    assert layers(["z", "a", "b", "c"], [("a", "b"), ("b", "z"), ("a", "z")]) == [["a", "c"], ["b"], ["z"]]


def test_layers_ignore_unknown_nodes_and_keep_nodes_on_a_cycle() -> None:
    assert layers(["a", "b", "c"], [("a", "ghost"), ("b", "c"), ("c", "b")]) == [["a"], ["b", "c"]]


def test_barycenter_untangles_crossed_edges() -> None:
    # a->y, b->x: input order crosses the two edges; the sweep puts y above x.
    ordered = order_layers([["a", "b"], ["x", "y"]], [("a", "y"), ("b", "x")])
    assert ordered[1] == ["y", "x"]


def test_svg_has_one_node_per_node_and_one_path_per_edge() -> None:
    nodes = [DagNode("a", "a", "completed", 1.23), DagNode("b", "b", "failed", 0.5, note="boom"),
             DagNode("c", "c", "skipped"), DagNode("d", "d")]
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "nowhere")]
    root = parse(render_svg(nodes, edges, title="diamond"))
    drawn = groups_of(root, "node")
    assert [g.get("data-step") for g in drawn] == ["a", "b", "c", "d"]
    assert [g.get("data-status") for g in drawn] == ["completed", "failed", "skipped", None]
    assert len([p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]) == 4
    texts = [t.text for g in drawn for t in g.iter(f"{SVG}text")]
    assert "1.2 s" in texts and "boom" in texts
    fills = {g.get("data-step"): g.find(f"{SVG}rect").get("fill") for g in drawn}  # type: ignore[union-attr]
    assert len({fills["a"], fills["b"], fills["c"], fills["d"]}) == 4
    assert float(root.get("width") or 0) > 3 * 184 and float(root.get("height") or 0) > 2 * 56


def test_labels_are_escaped_and_capped_with_the_full_id_in_a_title() -> None:
    evil = '<script>alert("x")</script> & \x01 \'quote\''
    long_id = "a_step_with_a_really_long_name_that_goes_on_and_on"
    svg = render_svg([DagNode(evil, evil, note=evil), DagNode(long_id, long_id)], [(evil, long_id)])
    assert "<script" not in svg
    root = parse(svg)
    first, second = groups_of(root, "node")
    assert first.get("data-step") == evil.replace("\x01", "\ufffd")
    label = next(t for t in second.iter(f"{SVG}text") if t.get("class") == "label")
    assert label.text is not None and label.text.endswith("…") and len(label.text) <= 24
    assert second.findtext(f"{SVG}title") == long_id
    assert [p.get("data-from") for p in root.iter(f"{SVG}path") if p.get("class") == "edge"] == [first.get("data-step")]


def test_a_folded_node_carries_its_children_hidden() -> None:
    items = tuple(DagNode(f"findings[{i}]", f"[{i}]", "failed" if i == 2 else "completed", 0.1 * i)
                  for i in range(5))
    root = parse(render_svg([DagNode("plan", "plan", "completed"),
                             DagNode("findings", "findings", "failed", 3.0, "5 items, 1 failed", items)],
                            [("plan", "findings")]))
    nodes = groups_of(root, "node")
    assert len(nodes) == 2 and nodes[1].get("class") == "node folded"
    (block,) = groups_of(root, "children")
    assert block.get("data-parent") == "findings" and block.get("style") == "display:none"
    assert [g.get("data-step") for g in groups_of(block, "child")] == [item.id for item in items]
    assert [g.get("data-status") for g in groups_of(block, "child")].count("failed") == 1


def test_two_hundred_steps_stay_well_formed() -> None:
    nodes = [DagNode(f"s{i}", f"step number {i} " * 3, "completed", i / 10) for i in range(200)]
    edges = [(f"s{i}", f"s{i + 1 + i % 7}") for i in range(199) if i + 1 + i % 7 < 200]
    root = parse(render_svg(nodes, edges))
    assert len(groups_of(root, "node")) == 200


def test_an_empty_graph_is_still_an_svg() -> None:
    assert len(list(parse(render_svg([], [])))) >= 1


def test_durations_read_short() -> None:
    assert [format_duration(s) for s in (0.351, 1.23, 42.0, 185.0, 7300.0)] == [
        "0.35 s", "1.2 s", "42.0 s", "3 min 5 s", "2 h 1 min"]
