"""The benchmark harness still runs, end to end, and every engine still computes the right outputs.

Tiny sizes (`--quick`: ~50 steps, one run); nothing here looks at a time. LangGraph takes part only
when it is installed (the `bench` extra).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKLOADS = ("layered", "http")  # layered has joins of 3 parents; http the SDK and loopback server


def test_quick_benchmark_completes_with_correct_outputs(tmp_path: Path) -> None:
    engines = ["orchestrai", "orchestrai+log", "floor"]
    if importlib.util.find_spec("langgraph") is not None:
        engines.append("langgraph")
    report = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--jobs", "3", "--no-memory",
                           "--workloads", ",".join(WORKLOADS), "--engines", ",".join(engines), "--json", str(report)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.read_text())["results"]
    for workload in WORKLOADS:
        for engine in engines:
            if workload == "http" and engine == "langgraph":
                continue  # http measures the SDK, which LangGraph nodes would share
            [run] = results[workload][engine]
            assert run["status"] == "completed" and run["errors"] == 0, (workload, engine, run)
            assert run["outputs_ok"] and run["final_ok"], (workload, engine)
    assert "### layered" in done.stdout and "| floor |" in done.stdout


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
