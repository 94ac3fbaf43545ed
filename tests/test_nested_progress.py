"""Fan-outs, loops and sub-pipelines on the terminal: folded into their step in the progress views, the
summary table and `orchestrai logs show`. Synthetic event sequences and logs: no engine run needed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrai.api import (
    CallFinished,
    Event,
    FanoutStarted,
    LoopIteration,
    RunFinished,
    RunStarted,
    StepEnded,
    StepRecord,
    StepStarted,
    Totals,
    Usage,
)
from orchestrai.cli.render import print_run
from orchestrai.observe.nesting import depth_of, fold_text, iteration_of, parent_of
from orchestrai.observe.progress import LiveProgress, PlainProgress, summary_table
from orchestrai.observe.runs import summarize_run

REPO = str(Path(__file__).resolve().parent.parent)  # the subprocesses run this checkout's orchestrai


class Clock:
    """A clock the test moves by hand: progress lines and ETAs without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=160, color_system=None), out


def record(step_id: str, status: str = "completed", *, parent: str | None = None, tokens: tuple[int, int] = (10, 5),
           cost: float | None = 0.001, calls: int = 1, **details: Any) -> StepRecord:
    made = StepRecord(id=step_id, module="summarizer", output_name=step_id, status=status,  # type: ignore[arg-type]
                      parent=parent, usage=Usage(*tokens), cost_usd=cost, calls=calls, started_at=100.0,
                      finished_at=101.5, details=details, output=f"out of {step_id}")
    if status == "failed":
        made.error = f"{step_id} broke\n  hint: fix the prompt"
    return made


def container(step_id: str, **details: Any) -> StepRecord:
    """A fan-out / loop / sub-pipeline record: no calls of its own."""
    return record(step_id, tokens=(0, 0), cost=None, calls=0, **details)


def run_started(*step_ids: str) -> RunStarted:
    return RunStarted("run1", "nested", "nested.yml", step_ids, 0.0, {}, {})


def step(rec: StepRecord) -> list[Event]:
    return [StepStarted(rec.id, rec.module, 0.0), StepEnded(rec)]


def fanout(step_id: str, total: int, failed: Iterable[int] = ()) -> tuple[list[Event], list[StepRecord]]:
    """The events of a fan-out of `total` items (some failed), and the records, its own last."""
    failed = set(failed)
    events: list[Event] = [StepStarted(step_id, "summarizer", 0.0), FanoutStarted(step_id, total)]
    records = []
    for index in range(total):
        item = record(f"{step_id}[{index}]", "failed" if index in failed else "completed", parent=step_id, item=index)
        records.append(item)
        events += [StepStarted(item.id, "summarizer", 0.0),
                   CallFinished(item.id, "openai", "gpt-4o-mini", Usage(10, 5), 0.001, 0.1), StepEnded(item)]
    own = container(step_id, items=total, failed_items=[f"{step_id}[{index}]" for index in sorted(failed)])
    return [*events, StepEnded(own)], [*records, own]


def loop(step_id: str, iterations: int, body: tuple[str, ...] = ("draft", "review"),
         maximum: int = 4) -> tuple[list[Event], list[StepRecord]]:
    events: list[Event] = [StepStarted(step_id, "loop", 0.0)]
    records = []
    for iteration in range(1, iterations + 1):
        events.append(LoopIteration(step_id, iteration, maximum))
        for name in body:
            body_record = record(f"{step_id}#{iteration}/{name}", parent=step_id, iteration=iteration)
            records.append(body_record)
            events += step(body_record)
    own = container(step_id, iterations=iterations, stopped="until")
    return [*events, StepEnded(own)], [*records, own]


def feed(view: Any, events: Iterable[Event], clock: Clock | None = None, tick: float = 0.0) -> None:
    for event in events:
        if clock is not None:
            clock.now += tick
        view.on_event(event)


def finished(records: list[StepRecord]) -> RunFinished:
    return RunFinished("run1", "completed", 10.0, Totals(0, 0, 0.0, True, 10.0), tuple(records))


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize(("step_id", "parent", "depth"), [
    ("findings", None, 0), ("findings[3]", "findings", 1), ("refine#2/draft", "refine", 1),
    ("research/plan", "research", 1), ("research[2]/plan", "research[2]", 2),
    ("refine#1/topics[4]", "refine#1/topics", 2),
])
def test_the_id_says_where_a_record_belongs(step_id: str, parent: str | None, depth: int) -> None:
    assert parent_of(step_id) == parent
    assert depth_of(step_id) == depth


def test_fold_text_counts_items_and_iterations_and_ignores_a_modules_own_details() -> None:
    kids = [("f[0]", "completed"), ("f[1]", "failed")]
    assert fold_text({}, kids) == "2 items, 1 failed"
    assert fold_text({"items": 120, "failed_items": ["f[1]"]}, kids) == "120 items, 1 failed"
    assert fold_text({"items": 120, "failed_items": ["f[1]", "f[7]"]}, []) == "120 items, 2 failed"  # a log cut short
    assert fold_text({"items": 3, "failed_items": ["f[1]", "f[2]"]}, [*kids, ("f[2]", "skipped")]) == \
        "3 items, 1 failed, 1 skipped", "a skipped item is not a failed one"
    assert fold_text({}, [("refine#1/a", "completed"), ("refine#3/a", "completed")]) == "3 iterations"
    assert fold_text({"iterations": 4, "stopped": "max_iterations"}, []) == "4 iterations, max reached"
    assert fold_text({"iterations": [{"command": "pytest"}]}, []) == ""  # the debugger's own details
    assert iteration_of("refine#2/draft") == 2 and iteration_of("findings[2]") is None


# ---------------------------------------------------------------- plain output


def test_plain_output_of_a_big_fanout_is_a_few_lines_not_one_per_item() -> None:
    out_console, out = console()
    clock = Clock()
    view = PlainProgress(out_console, clock=clock)
    events, records = fanout("findings", 120, failed=(5, 77))
    feed(view, [run_started("request", "findings"), *step(record("request")), *events, finished(records)], clock,
         tick=0.001)  # 120 items in well under the few seconds between time-based lines
    text = out.getvalue()
    lines = text.splitlines()

    assert "findings: 120 items" in lines
    progress = [line for line in lines if "items done" in line]
    assert 5 <= len(progress) <= 10, progress  # one at each tenth, none at the end
    assert "findings: 12/120 items done" in progress[0] and progress[-1].startswith("findings: 108/120")
    assert "findings: 84/120 items done, 2 failed" in lines
    assert "  ✖ findings[5] failed: findings[5] broke" in lines and "    hint: fix the prompt" in lines
    assert "  ✖ findings[77] failed: findings[77] broke" in lines
    assert "findings[6]" not in text and "findings[0]" not in text, "no line for an item that succeeded"
    assert any(line.startswith("✔ findings completed in 1.50s · 120 items, 2 failed") for line in lines), text
    assert len(lines) < 25


def test_plain_output_reports_a_slow_fanout_every_few_seconds_between_tenths() -> None:
    out_console, out = console()
    clock = Clock()
    view = PlainProgress(out_console, clock=clock)
    events, _ = fanout("findings", 1000)
    feed(view, [run_started("findings"), *events[:2]])
    for event in events[2:3 * 30 + 2]:  # 30 items, 2 s apart: all within the first tenth
        if isinstance(event, StepEnded):
            clock.now += 2.0
        view.on_event(event)

    progress = [line for line in out.getvalue().splitlines() if "items done" in line]
    assert progress == [f"findings: {done}/1,000 items done" for done in range(3, 31, 3)]  # every 6 s (>= 5 s)


def test_plain_output_shows_loop_iterations_with_their_steps_nested() -> None:
    out_console, out = console()
    view = PlainProgress(out_console)
    events, records = loop("refine", 2)
    feed(view, [run_started("refine"), *events, finished(records)])
    lines = out.getvalue().splitlines()

    assert lines[0] == "run run1: nested (1 steps)"
    assert lines[1:5] == ["▶ refine started (loop)", "refine iteration 1/4", "  ▶ refine#1/draft started (summarizer)",
                          "  ✔ refine#1/draft completed in 1.50s, 10→5 tokens, $0.0010"]
    assert "refine iteration 2/4" in lines and "  ✔ refine#2/review completed in 1.50s, 10→5 tokens, $0.0010" in lines
    assert lines[-1] == "✔ refine completed in 1.50s · 2 iterations"


def test_steps_inside_a_fanouts_items_are_folded_too() -> None:
    out_console, out = console()
    view = PlainProgress(out_console)
    inner = [record("research[0]/plan", parent="research[0]"),
             record("research[1]/plan", "failed", parent="research[1]")]
    items = [container("research[0]"), record("research[1]", "failed", parent="research")]
    items[0].parent = "research"
    events: list[Event] = [StepStarted("research", "pipelines/research.yml", 0.0), FanoutStarted("research", 2)]
    for sub, item in zip(inner, items, strict=True):
        events += [StepStarted(item.id, item.module, 0.0), *step(sub), LoopIteration(f"{item.id}/loop", 1, 2),
                   StepEnded(item)]
    feed(view, [run_started("research"), *events, StepEnded(container("research", items=2, failed_items=[1]))])
    text = out.getvalue()

    assert "/plan" not in text and "research[0]" not in text and "iteration" not in text
    assert "  ✖ research[1] failed: research[1] broke" in text
    assert "✔ research completed in 1.50s · 2 items, 1 failed" in text


def test_a_sub_pipeline_step_opens_with_its_first_inner_step() -> None:
    out_console, out = console()
    view = PlainProgress(out_console)
    plan = record("research/plan", parent="research")
    # The engine announces no start for the calling step itself: its inner steps' starts show it.
    feed(view, [run_started("research"), *step(plan), StepEnded(container("research"))])

    assert out.getvalue().splitlines()[1:] == [
        "▶ research started (<pipeline>)", "  ▶ research/plan started (summarizer)",
        "  ✔ research/plan completed in 1.50s, 10→5 tokens, $0.0010", "✔ research completed in 1.50s"]


# ---------------------------------------------------------------- live view


def test_the_live_view_draws_a_fanout_as_one_row_with_a_bar_and_an_eta() -> None:
    out_console, out = console()
    clock = Clock()
    view = LiveProgress(out_console, clock=clock)
    events, _ = fanout("findings", 120, failed=(3,))
    loop_events, _ = loop("refine", 2)
    view.tally.update(run_started("request", "findings", "refine"))
    for event in events[:2 + 3 * 37]:  # 37 items done
        view.tally.update(event)
    view.tally.update(StepStarted("findings[37]", "summarizer", 0.0))
    for event in loop_events[:8]:  # iteration 2 began, its draft is running
        view.tally.update(event)
    clock.now = 37.0  # 37 items in 37 s: 83 s to go
    out_console.print(view._render())
    lines = out.getvalue().splitlines()

    assert lines[0] == "nested 0/3 steps · 555 tokens · $0.0370"
    fan_row = next(line for line in lines if "findings" in line)
    assert "findings 37/120 " in fan_row and "30%" in fan_row and "ETA 1:23" in fan_row and "1 failed" in fan_row
    assert "555 tok" in fan_row
    assert sum("findings" in line for line in lines) == 1, "no row per running item"
    loop_row = lines.index(next(line for line in lines if "refine iteration 2/4" in line))
    assert "refine#2/draft (summarizer)" in lines[loop_row + 1] and lines[loop_row + 1].startswith("  ")


def test_the_live_view_draws_sub_pipeline_steps_under_their_step() -> None:
    out_console, out = console()
    view = LiveProgress(out_console)
    for event in [run_started("research"), StepStarted("research/plan", "task_planner", 0.0),
                  CallFinished("research/plan", "openai", "gpt-4o-mini", Usage(100, 50), None, 0.1)]:
        view.tally.update(event)
    out_console.print(view._render())
    lines = out.getvalue().splitlines()

    assert "research (<pipeline>)" in lines[1] and "150 tok  —" in lines[1]  # its steps' tokens, cost unknown
    assert lines[2].startswith("  ") and "research/plan (task_planner)" in lines[2] and "150 tok" in lines[2]


def test_the_live_view_prints_only_failed_items_and_keeps_nothing_per_item() -> None:
    out_console, out = console()
    view = LiveProgress(out_console)
    events, records = fanout("findings", 10_000, failed=(4_321,))
    feed(view, [run_started("findings"), *events[:-1]])

    assert view.tally.running.keys() == {"findings"} and view.tally.children == {None: {"findings": view.tally.running[
        "findings"]}}, "a running or finished item leaves nothing behind"
    assert view.tally.fanouts["findings"].done == 10_000
    feed(view, [events[-1], finished(records)])
    text = out.getvalue()
    assert "✖ findings[4321] failed" in text and "findings[4320]" not in text
    assert "✔ findings completed in 1.50s · 10,000 items, 1 failed" in text


# ---------------------------------------------------------------- summary table


def table_text(records: list[StepRecord]) -> list[str]:
    out_console, out = console()
    out_console.print(summary_table(records, Totals(0, 0, 0.0, True, 1.0)))
    return out.getvalue().splitlines()


def row(lines: list[str], step_id: str) -> list[str]:
    return next(line for line in lines if line.startswith(step_id + " ")).split("│")


def test_the_summary_table_folds_items_iterations_and_sub_steps_into_their_step() -> None:
    _, fan_records = fanout("findings", 120, failed=(1, 2))
    _, loop_records = loop("refine", 3)
    research = [record("research/plan", parent="research"), record("research/write", parent="research", cost=None),
                container("research")]
    lines = table_text([record("request"), *fan_records, *loop_records, *research])

    assert [line.split()[0] for line in lines[2:6]] == ["request", "findings", "refine", "research"]
    assert not any("[" in line or "#" in line or "/" in line for line in lines), "one row per top-level step"
    findings = row(lines, "findings")
    assert "completed · 120 items, 2 failed" in findings[2]
    assert [cell.strip() for cell in findings[4:]] == ["1,200", "600", "$0.1200"]  # the items' sums
    assert "completed · 3 iterations" in row(lines, "refine")[2]
    assert [cell.strip() for cell in row(lines, "refine")[4:]] == ["60", "30", "$0.0060"]
    assert "completed · 2 steps" in row(lines, "research")[2]
    assert row(lines, "research")[6].strip() == "$0.0010 + unpriced"


def test_a_parent_that_carries_its_childrens_sums_is_not_counted_twice() -> None:
    _, fan_records = fanout("findings", 4)
    fan_records[-1] = record("findings", tokens=(40, 20), cost=0.004, calls=0, items=4, failed_items=[])

    assert [cell.strip() for cell in row(table_text(fan_records), "findings")[4:]] == ["40", "20", "$0.0040"]


# ---------------------------------------------------------------- orchestrai logs show


def step_json(rec: StepRecord) -> dict[str, Any]:
    from orchestrai.observe.memory_log import step_json as as_logged

    rec.provider = "openai" if rec.calls else None
    return as_logged(rec)


def nested_log(tmp_path: Path, items: int = 25) -> Path:
    _, fan_records = fanout("findings", items, failed=(7,))
    fan_records[-1].output = [f"out of findings[{index}]" for index in range(items)]
    _, loop_records = loop("refine", 2)
    research = [record("research/plan", parent="research"), container("research")]
    steps = [step_json(rec) for rec in [record("request"), *fan_records, *loop_records, *research]]
    log = {"run_id": "nestedrun1", "pipeline": "nested", "status": "partial", "started_at": "2025-01-01T00:00:00",
           "finished_at": "2025-01-01T00:00:10", "dry_run": False,
           "totals": {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "cost_complete": True}, "steps": steps}
    path = tmp_path / "20250101-000000-nested-nestedrun1.json"
    path.write_text(json.dumps(log), encoding="utf-8")
    return path


def shown(path: Path, **options: Any) -> str:
    out_console, out = console()
    print_run(out_console, path, json.loads(path.read_text(encoding="utf-8")), **options)
    return out.getvalue()


def test_logs_show_nests_children_and_folds_a_big_fanout(tmp_path: Path) -> None:
    text = shown(nested_log(tmp_path))
    lines = text.splitlines()

    assert any(line.startswith("findings (summarizer) — completed · 25 items, 1 failed ─") for line in lines), text
    assert "  25 items: 24 completed, 1 failed; the failed ones below (--all shows every item)" in lines
    assert "  ── findings[7] (summarizer) — failed" in lines
    assert "  findings[7] broke" in lines
    assert "findings[8]" not in text and "out of findings[0]" not in text, "folded: no succeeded item, no item list"
    assert "model — via —; 250→125 tokens (its nested steps summed); 1.5s" in lines  # 25 items, 10→5 each
    refine = next(index for index, line in enumerate(lines)
                  if line.startswith("refine (summarizer) — completed · 2 iterations"))
    assert lines[refine + 3: refine + 5] == ["  iteration 1", "  ── refine#1/draft (summarizer) — completed"]
    assert "  out of refine#1/draft" in lines
    assert "  iteration 2" in lines
    assert "  ── research/plan (summarizer) — completed" in lines


def test_logs_show_all_shows_every_item(tmp_path: Path) -> None:
    text = shown(nested_log(tmp_path), show_all=True)

    assert "--all shows" not in text
    assert all(f"  ── findings[{index}] (summarizer) — " in text for index in range(25))
    assert "  out of findings[24]" in text.splitlines()


def test_a_small_fanout_is_shown_whole(tmp_path: Path) -> None:
    text = shown(nested_log(tmp_path, items=3))

    assert "--all shows" not in text and "  ── findings[0] (summarizer) — completed" in text


def test_logs_lists_a_nested_run_by_its_own_steps(tmp_path: Path) -> None:
    path = nested_log(tmp_path)
    summary = summarize_run(path, json.loads(path.read_text(encoding="utf-8")))

    assert (summary.steps, summary.steps_completed) == (4, 4)


def test_the_logs_show_command_takes_all(tmp_path: Path) -> None:
    path = nested_log(tmp_path)
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": REPO}

    def show(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrai", "logs", "show", str(path), "--log-dir",
                               str(tmp_path), *flags], cwd=tmp_path, env=env,
                              capture_output=True, text=True, encoding="utf-8", timeout=60)

    folded, whole = show(), show("--all")
    assert folded.returncode == 0 and whole.returncode == 0, folded.stderr + whole.stderr
    assert "--all shows every item" in folded.stdout and "findings[8]" not in folded.stdout
    assert "findings[8] (summarizer) — completed" in whole.stdout



# ---------------------------------------------------------------- end to end, through the CLI and the engine


def test_a_dry_run_of_foreach_and_loop_shows_the_folded_summary_and_logs_show_nests_it(project: Path) -> None:
    from conftest import write

    write(project / "modules" / "split.py", """
        async def run(ctx, inputs):
            return [part.strip() for part in inputs["request"].split(",")]
        """)
    write(project / "nested.yml", """
        name: nested
        pipeline:
          - {module: start_module, output_name: request}
          - {module: split, inputs: [request], output_name: topics}
          - {module: translator, id: findings, foreach: topics, as: topic, output_name: findings, supplement: Spanish}
          - loop:
              max_iterations: 2
              steps:
                - {module: translator, inputs: [findings], output_name: draft, supplement: French}
            id: refine
            output_name: final
        """)
    write(project / "config.yml", "log_dir: logs\ncache: false\n")
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": REPO}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "orchestrai", *args], cwd=project, env=env, capture_output=True,
                              text=True, encoding="utf-8", timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, proc.stderr
        return proc

    ran = cli("run", "nested.yml", "--dry-run", "--input", "request=" + ",".join(f"t{n}" for n in range(25)))
    progress = ran.stderr.splitlines()
    assert "findings: 25 items" in progress and "findings[" not in ran.stderr, "no line per item"
    assert any(line.startswith("✔ findings completed in ") and line.endswith(" · 25 items") for line in progress)
    assert "refine iteration 2/2" in progress and "  ▶ refine#2/draft started (translator)" in progress
    assert any(line.startswith("✔ refine completed in ") and line.endswith(" · 2 iterations, max reached")
               for line in progress)
    rows = {line.split()[0]: line for line in progress if "│" in line}
    assert list(rows) == ["request", "topics", "findings", "refine", "total"], "one row per top-level step"
    assert "completed · 25 items " in rows["findings"] and "completed · 2 iterations, max reached" in rows["refine"]
    log_path, = (project / "logs").glob("*.json")
    steps = json.loads(log_path.read_text(encoding="utf-8"))["steps"]
    items = [s for s in steps if s.get("parent") == "findings"]
    assert len(items) == 25 and steps[2]["usage"]["input_tokens"] == 0  # the fan-out's own record makes no call
    assert rows["findings"].split("│")[4].strip() == f"{sum(s['usage']['input_tokens'] for s in items):,}"

    folded, whole = cli("logs", "show", str(log_path)).stdout, cli("logs", "show", "--all", str(log_path)).stdout
    assert "findings (translator) — completed · 25 items" in folded
    assert "  25 items: 25 completed (--all shows every item)" in folded and "findings[0]" not in folded
    assert "  iteration 2\n  ── refine#2/draft (translator) — completed\n" in folded
    assert all(f"  ── findings[{n}] (translator) — completed" in whole for n in range(25))
