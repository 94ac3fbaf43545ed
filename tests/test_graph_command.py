"""`orchestrai graph`: every example pipeline in every format, run as a user runs it (a subprocess), mistakes
as `path:line` with exit 2, and hostile text escaped in every format (Graphviz itself parses our DOT)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO, write

from orchestrai.graphviews import PipelineView, as_dot, as_mermaid, as_svg, as_text, graphviz_svg
from orchestrai.observe.dag import DagNode
from orchestrai.project import Project

SVG = "{http://www.w3.org/2000/svg}"
TIMEOUT_S = 60
EXAMPLES = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "pipelines").rglob("*.yml"))
FORMATS = ("text", "mermaid", "dot", "svg")
DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(DOT is None and not os.environ.get("CI"),
                               reason="needs Graphviz's dot (in CI a missing dot fails instead)")


def start(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestrai", "graph", *args], cwd=project,
                            env=dict(os.environ) if env is None else env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")


def graph(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = start(project, *args, env=env)
    out, err = proc.communicate(timeout=TIMEOUT_S)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def check_mermaid(text: str, steps: list[str], edges: int) -> None:
    """What Mermaid's flowchart grammar needs of ours: the header, quoted labels with no raw quote, edges
    between declared ids."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    declared = [m.group(1) for line in lines[1:] if (m := re.fullmatch(r'    (n\d+)\["([^"]*)"\]', line))]
    arrows = [re.fullmatch(r"    (n\d+) --> (n\d+)", line) for line in lines[1:] if "-->" in line]
    assert len(declared) == len(steps) and len(arrows) == edges
    assert all(m is not None and {m.group(1), m.group(2)} <= set(declared) for m in arrows)
    assert len(lines) == 1 + len(steps) + edges


def check_svg(text: str, steps: list[str]) -> ET.Element:
    root = ET.fromstring(text)
    nodes = [g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "").split()]
    assert [g.get("data-step") for g in nodes] == steps
    return root


def dot_parses(text: str) -> str:
    """Graphviz's own parser on our DOT: the SVG it lays out (raises on a syntax error)."""
    done = subprocess.run([DOT or "dot", "-Tsvg"], input=text, capture_output=True, text=True, timeout=TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_in_every_format(project: Path, example: str) -> None:
    loaded = Project.open(None).load(example)
    steps = [step.id for step in loaded.pipeline.steps]
    edges = sum(len(targets) for targets in loaded.successors.values())
    running = {fmt: start(project, example, "--format", fmt) for fmt in FORMATS}
    out = {}
    for fmt, proc in running.items():
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        assert proc.returncode == 0, stderr
        out[fmt] = stdout
    text_lines = out["text"].splitlines()
    grouped = [name for group in re.findall(r"\d+: \[([^\]]*)\]", text_lines[0]) for name in group.split(", ")]
    assert sorted(grouped) == sorted(steps)
    assert len([line for line in text_lines[1:] if " -> " in line]) == edges
    check_mermaid(out["mermaid"], steps, edges)
    assert out["dot"].startswith(f'digraph "{loaded.pipeline.name}" {{')
    assert out["dot"].count(" -> ") == edges
    check_svg(out["svg"], steps)
    if DOT is not None or os.environ.get("CI"):
        graphviz_titles = [t.text for t in ET.fromstring(dot_parses(out["dot"])).iter(f"{SVG}title")]
        assert set(steps) <= set(graphviz_titles)


def test_parallel_groups_of_known_pipelines(project: Path) -> None:
    procs = [start(project, "pipelines/translation.yml"), start(project, "pipelines/patterns/conditional.yml")]
    translation, conditional = (proc.communicate(timeout=TIMEOUT_S)[0] for proc in procs)
    assert translation.splitlines()[:3] == ["1: [request]  2: [spanish, french]", "request -> spanish",
                                            "request -> french"]
    lines = conditional.splitlines()
    assert lines[0] == "1: [request]  2: [classification]  3: [technical, general]  4: [merge]"
    assert "technical -> merge" in lines and "classification -> general" in lines
    assert "technical: pattern_technical_expert; when classification.kind == 'technical'" in lines


def test_folded_steps_say_what_they_do(project: Path) -> None:
    procs = [start(project, "pipelines/patterns/iterative.yml"), start(project, "pipelines/patterns/cascade.yml"),
             start(project, "pipelines/patterns/hierarchy.yml")]
    iterative, cascade, hierarchy = (proc.communicate(timeout=TIMEOUT_S)[0].splitlines() for proc in procs)
    assert "refine: loop ≤4: draft, review" in iterative
    assert "search: pattern_quick_searcher; foreach topics.topics" in cascade
    assert "answer: pattern_manager; tools: analyst, writer" in hierarchy


def test_a_sub_pipeline_step_is_one_node(project: Path) -> None:
    write(project / "pipelines" / "outer.yml", """
        name: outer
        pipeline:
          - {module: start_module, output_name: request}
          - id: research
            pipeline: patterns/hierarchy/analyst.yml
            inputs: [request]
            with: {task: request}
            output_name: findings
    """)
    done = graph(project, "pipelines/outer.yml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "1: [request]  2: [research]"
    assert "research: pipeline: patterns/hierarchy/analyst.yml" in done.stdout.splitlines()


def test_a_mistake_is_path_line_and_exit_2(project: Path) -> None:
    write(project / "bad.yml", """
        name: bad
        pipeline:
          - {module: start_module, output_name: request}
          - module: translator
            inputs: [request, nowhere]
            output_name: out
    """)
    for fmt in ("text", "svg"):
        done = graph(project, "bad.yml", "--format", fmt)
        assert done.returncode == 2 and done.stdout == ""
        assert re.search(r"bad\.yml:5", done.stderr) and "nowhere" in done.stderr
        assert "Traceback" not in done.stderr
    missing = graph(project, "no-such.yml")
    assert missing.returncode == 2 and "no-such.yml" in missing.stderr and "Traceback" not in missing.stderr
    wrong = graph(project, "bad.yml", "--format", "png")
    assert wrong.returncode == 2 and "unknown format 'png'" in wrong.stderr


HOSTILE = 'a"b<c>&d#x[y]{z}|`'  # a library caller's id (a pipeline's ids are letters, digits, _ - .)
NOTE = 'when x < 3 and y == "\\n" & z'  # a backslash too: DOT labels read `\n` as a line break


def hostile_view() -> PipelineView:
    nodes = (DagNode("start", "start"), DagNode(HOSTILE, HOSTILE, note=NOTE))
    return PipelineView(f"p{HOSTILE}", nodes, (("start", HOSTILE),), f"1: [start]  2: [{HOSTILE}]")


def test_hostile_names_are_escaped_in_every_format() -> None:
    view = hostile_view()
    assert f"start -> {HOSTILE}" in as_text(view).splitlines()
    mermaid = as_mermaid(view)
    check_mermaid(mermaid, ["start", HOSTILE], 1)
    assert "#quot;" in mermaid and "#lt;" in mermaid and "<c>" not in mermaid
    root = check_svg(as_svg(view), ["start", HOSTILE])
    assert any(t.text == f"p{HOSTILE}" for t in root.iter(f"{SVG}text"))
    dot = as_dot(view)
    assert f'"{HOSTILE}"' not in dot  # the quote and backslash inside are escaped
    if DOT is not None or os.environ.get("CI"):
        laid_out = ET.fromstring(dot_parses(dot))
        assert HOSTILE in [t.text for t in laid_out.iter(f"{SVG}title")]  # Graphviz read back the id we meant
        assert NOTE in [t.text for t in laid_out.iter(f"{SVG}text")]  # and the label, backslash and all


def test_a_when_with_quotes_and_angle_brackets_through_the_cli(project: Path) -> None:
    write(project / "cond.yml", """
        name: cond
        pipeline:
          - {module: start_module, output_name: request}
          - module: translator
            id: odd.name-1
            inputs: [request]
            when: "request < 'b' and request != \\"<script>\\""
            output_name: out
    """)
    procs = {fmt: start(project, "cond.yml", "--format", fmt) for fmt in FORMATS}
    out = {fmt: proc.communicate(timeout=TIMEOUT_S) for fmt, proc in procs.items()}
    assert all(proc.returncode == 0 for proc in procs.values()), {f: e for f, (_, e) in out.items()}
    assert "odd.name-1: translator; when request < 'b' and request != \"<script>\"" in out["text"][0]
    assert "<script>" not in out["mermaid"][0] and "<script>" not in out["svg"][0]
    check_mermaid(out["mermaid"][0], ["request", "odd.name-1"], 1)
    check_svg(out["svg"][0], ["request", "odd.name-1"])
    if DOT is not None or os.environ.get("CI"):
        dot_parses(out["dot"][0])


def test_output_file_picks_the_format_from_its_suffix(project: Path) -> None:
    done = graph(project, "pipelines/translation.yml", "-o", "t.svg")
    assert done.returncode == 0 and "wrote t.svg (svg)" in done.stderr and done.stdout == ""
    check_svg((project / "t.svg").read_text(encoding="utf-8"), ["request", "spanish", "french"])
    dot = graph(project, "pipelines/translation.yml", "-o", "t.dot")
    assert dot.returncode == 0 and (project / "t.dot").read_text(encoding="utf-8").startswith("digraph")


@needs_dot
def test_graphviz_draws_the_svg(project: Path) -> None:
    done = graph(project, "pipelines/translation.yml", "--graphviz")
    assert done.returncode == 0, done.stderr
    root = ET.fromstring(done.stdout)
    assert root.tag == f"{SVG}svg" and "graphviz" in done.stdout.lower()
    titles = {t.text for t in root.iter(f"{SVG}title")}
    assert {"request", "spanish", "french", "request->spanish"} <= titles


def test_graphviz_missing_is_one_clear_line_and_exit_2(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-dot-here"
    empty.mkdir()
    done = graph(project, "pipelines/translation.yml", "--graphviz", env={**os.environ, "PATH": str(empty)})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[0] == "error: --graphviz needs Graphviz's `dot` on PATH, and it is not there"
    assert "Traceback" not in done.stderr
    wrong = graph(project, "pipelines/translation.yml", "--graphviz", "--format", "dot")
    assert wrong.returncode == 2 and "--graphviz draws SVG, not dot" in wrong.stderr


def test_graphviz_svg_reports_a_failing_dot(tmp_path: Path) -> None:
    fake = write(tmp_path / "dot", "#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 1\n")
    fake.chmod(0o755)
    from orchestrai.errors import OrchestraiError

    with pytest.raises(OrchestraiError, match="syntax error in line 1"):
        graphviz_svg("digraph {}", dot=str(fake))
