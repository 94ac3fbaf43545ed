"""observe/dag.py: Kahn layers, the barycenter order, and an SVG that is well-formed whatever the labels."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

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


def test_folded_children_take_no_height_until_opened() -> None:
    plain = [DagNode("plan", "plan", "completed", 1.0), DagNode("findings", "findings", "completed", 2.0, "9 items")]
    items = tuple(DagNode(f"findings[{i}]", f"[{i}]", "completed", 0.1) for i in range(9))
    folded = [plain[0], DagNode("findings", "findings", "completed", 2.0, "9 items", items)]
    without, with_children = parse(render_svg(plain, [("plan", "findings")])), parse(render_svg(folded, [("plan",
                                                                                                      "findings")]))
    assert with_children.get("height") == without.get("height") == with_children.get("data-height")
    assert with_children.get("viewBox") == without.get("viewBox")
    (block,) = groups_of(with_children, "children")
    assert float(block.get("data-bottom") or 0) > float(with_children.get("height") or 0)  # 9 rows need room


# Lines a browser must fit in their boxes: wide letters, CJK, long words, long statuses and times.
HARD = ["pattern_research_synthesizer_with_a_long_name", "W" * 40, "m" * 40, "数据分析步骤" * 5, "@%#&" * 12,
        "a fairly long note with spaces between its many words and more words"]


def hard_graph() -> str:
    kids = tuple(DagNode(f"k[{i}]", text, "interrupted", 3599.0 + i) for i, text in enumerate(HARD))
    statuses = ["interrupted", "completed", "failed", "skipped", None, "running"]
    nodes = [DagNode(f"n{i}", text, status, 3599.0, text, kids if i == 0 else ())
             for i, (text, status) in enumerate(zip(HARD, statuses, strict=True))]
    nodes.append(DagNode("plain", "plain", note=HARD[5] + " " + HARD[0]))  # two note lines, no status
    return render_svg(nodes, [("n0", "n1"), ("n1", "n2")], title=" ".join(HARD))


MEASURE = """<script>
document.querySelectorAll('g.children').forEach(g => { g.style.display = ''; });
const out = [];
const svg = document.querySelector('svg');
const inside = (box, outer) => box.x >= outer.x - 0.5 && box.x + box.width <= outer.x + outer.width + 0.5;
document.querySelectorAll('g.node, g.child').forEach(g => {
  const rect = g.querySelector('rect').getBBox();
  const texts = [...g.querySelectorAll(':scope > text')];
  for (const t of texts) {
    const parts = t.querySelectorAll('tspan').length ? [...t.querySelectorAll('tspan')] : [t];
    for (const p of parts) {
      const box = p.getBBox();
      if (!inside(box, rect)) out.push(g.dataset.step + ': ' + p.textContent + ' ' + box.width + ' > ' + rect.width);
    }
  }
  const status = g.querySelector('text.status'), time = g.querySelector('text.time');
  if (status && time && status.getBBox().x + status.getBBox().width > time.getBBox().x) {
    out.push('overlap ' + g.dataset.step);
  }
});
const title = document.querySelector('text.dag-title');
if (title.getBBox().x + title.getBBox().width > svg.viewBox.baseVal.width) out.push('title');
document.body.insertAdjacentHTML('beforeend', '<pre id="out">' + JSON.stringify(out).replace(/</g, '&lt;') + '</pre>');
</script>"""


@pytest.mark.parametrize("page_css", ["", "svg text{font:12px system-ui,sans-serif;fill:#222}"],
                         ids=["standalone", "under-the-report-css"])
def test_every_text_line_fits_its_box_in_chromium(tmp_path: Path, page_css: str) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI installs it: .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "dag.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><style>{page_css}</style></head><body>"
                    f"{hard_graph()}{MEASURE}</body></html>", encoding="utf-8")
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.findall(r'<pre id="out">(.*?)</pre>', dom, re.S)  # the last: the script's own text comes first
    assert found, dom[-1500:]
    assert json.loads(html.unescape(found[-1])) == []
