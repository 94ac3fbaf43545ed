"""The benchmark harness still runs, end to end, and every engine still computes the right outputs.

Tiny sizes (`--quick`: ~50 steps, 20 fan-out items, 5 loop iterations; one run); nothing here looks
at a time. LangGraph takes part only when it is installed (the `bench` extra).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# layered has joins of 3 parents; http the SDK and loopback server; fanout and loop foreach and loop:
WORKLOADS = ("layered", "http", "fanout", "loop")


def test_quick_benchmark_completes_with_correct_outputs(tmp_path: Path) -> None:
    engines = ["orchestrai", "orchestrai+log", "floor", "floor-tasks"]
    if importlib.util.find_spec("langgraph") is not None:
        engines.append("langgraph")
    report = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--jobs", "3", "--no-memory",
                           "--workloads", ",".join(WORKLOADS), "--engines", ",".join(engines), "--json", str(report)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.read_text())["results"]
    for workload in WORKLOADS:
        for engine in engines:
            if workload == "http" and engine == "langgraph":
                continue  # http measures the SDK, which LangGraph nodes would share
            if engine == "floor-tasks" and workload != "loop":
                continue  # a reference row for loop only
            [run] = results[workload][engine]
            assert run["status"] == "completed" and run["errors"] == 0, (workload, engine, run)
            assert run["outputs_ok"] and run["final_ok"], (workload, engine, run.get("mismatch"))
    assert "### layered" in done.stdout and "| floor |" in done.stdout
    assert "overhead µs/item" in done.stdout and "overhead µs/iteration" in done.stdout


def test_fanout_and_loop_references_catch_a_wrong_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that drops an item, reorders items, stops an iteration early or loses the feedback is WRONG."""
    import asyncio

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from floor import run_fanout_floor, run_loop_floor
    from workloads import Node, build, echo_reply, fanout_outputs, loop_outputs, reference_outputs

    async def work(node: Node, inputs: list[tuple[str, str]]) -> str:
        return echo_reply(inputs, node.supplement)

    fanout, loop = build("fanout", quick=True), build("loop", quick=True)
    raw = asyncio.run(run_fanout_floor(fanout, work))
    assert fanout_outputs(raw, fanout) == reference_outputs(fanout)
    swapped = raw | {"findings": [raw["findings"][1], raw["findings"][0], *raw["findings"][2:]]}
    assert fanout_outputs(swapped, fanout) != reference_outputs(fanout)
    assert fanout_outputs(raw | {"findings": raw["findings"][:-1]}, fanout) != reference_outputs(fanout)
    rows = asyncio.run(run_loop_floor(loop, work))
    assert len(rows) == loop.repeat and loop_outputs(rows, loop) == reference_outputs(loop)
    assert loop_outputs(rows[:-1], loop) != reference_outputs(loop)
    no_feedback = [(echo_reply([], "draft it"), rows[0][1]), *rows[1:]]
    no_feedback[1] = (echo_reply([], "draft it"), rows[1][1])  # iteration 2 did not see critique 1
    assert loop_outputs(no_feedback, loop) != reference_outputs(loop)


def test_quick_batch_benchmark_gives_the_same_outputs_in_every_mode(tmp_path: Path) -> None:
    report = tmp_path / "batch.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "batch.py"), "--rows", "20", "--runs", "1",
                           "--json", str(report)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(report.read_text())["runs"]
    assert set(runs) == {"loop", "loop+log", "batch", "batch+log"}
    digests = {run["outputs"] for mode in runs.values() for run in mode}
    assert len(digests) == 1 and all(run["complete"] and not run["failed"] for mode in runs.values() for run in mode)
    assert "### batch: 20 rows" in done.stdout and "| batch+log |" in done.stdout
