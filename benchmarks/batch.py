"""The batch workload: N rows x a 3-step pipeline on echo (0 ms), the local executor, against N run_pipeline calls.

    python benchmarks/batch.py                      # 10,000 rows, 3 runs of each mode, about 10 minutes
    python benchmarks/batch.py --rows 200 --runs 1  # quick
    python benchmarks/batch.py --json out.json --markdown out.md

Modes, each run in a fresh process (`--child MODE`), taking turns run by run:
- `loop`: `run_pipeline` called N times one after another in one process, one `Shared` for all (the
  floor a batch cannot beat: the same engine work, nothing else);
- `loop+log`: the same with a `MemoryLog` per run (what a batch writes per row);
- `batch`: `run_batch` with rows read from a JSONL file, the results file appended per row, progress
  bookkeeping, `--concurrency 4`, no memory logs (`write_logs=False`);
- `batch+log`: `run_batch` as `orchestrai batch` runs it: a memory log per row under the batch folder
  and a summary.
Per-row overhead = (mode's time - loop's time) / N, in CPU time (process_time: what the process
itself spent, steadier than wall time on a shared machine) and in wall time. Peak memory: the process's peak RSS
(VmHWM) after setup is subtracted, so it is what the rows themselves held; tracemalloc is not
used (it slows Python code ~3x). Every mode's final outputs are hashed and must equal the loop's:
exit status 1 otherwise (or if a run fails); timings never fail it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODES = ("loop", "loop+log", "batch", "batch+log")
PIPELINE = """name: batch-bench
pipeline:
  - {module: start_module, output_name: request}
  - {module: bench_echo, inputs: [request], output_name: first}
  - {module: bench_echo, inputs: [first], output_name: second}
  - {module: bench_echo, inputs: [second], output_name: third}
"""


def write_project(root: Path, rows: int) -> None:
    (root / "system_prompts").mkdir(parents=True, exist_ok=True)
    (root / "system_prompts" / "bench_echo.md").write_text("You echo your input.\n", encoding="utf-8")
    (root / "config.yml").write_text("providers:\n  echo: {type: echo, latency_s: 0}\n"
                                     "default_model_config: {provider: echo, model: bench}\n"
                                     "cache: false\nlog_dir: logs\n", encoding="utf-8")
    (root / "pipeline.yml").write_text(PIPELINE, encoding="utf-8")
    with (root / "rows.jsonl").open("w", encoding="utf-8") as handle:
        for n in range(rows):
            handle.write(json.dumps({"request": f"row {n}: translate this sentence, please."}) + "\n")


def status_kb(field: str) -> int:
    found = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    return int(found.group(1)) if found else 0


def reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS (Linux >= 4.0)


def digest(outputs: dict[int, Any]) -> str:
    return hashlib.sha256(json.dumps(sorted(outputs.items())).encode()).hexdigest()[:16]


async def run_loop(root: Path, rows: int, with_log: bool) -> tuple[dict[int, Any], int]:
    from orchestrai.engine.runner import RunOptions, run_pipeline
    from orchestrai.engine.shared import Shared
    from orchestrai.observe.memory_log import MemoryLog
    from orchestrai.project import Project

    project = Project.open(root / "config.yml")
    graph = project.load(root / "pipeline.yml")
    shared = Shared.open(project.config, use_cache=False)
    outputs: dict[int, Any] = {}
    failed = 0
    try:
        with (root / "rows.jsonl").open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                hooks: list[Any] = [MemoryLog(root / "logs" / "loop")] if with_log else []
                result = await run_pipeline(graph, project.config, project.registry,
                                            RunOptions(run_inputs=json.loads(line), shared=shared,
                                                       run_id=f"loop-{number}"), hooks)
                failed += result.status != "completed"
                outputs[number] = result.outputs["third"]
    finally:
        await shared.aclose()
    return outputs, failed


async def run_rows(root: Path, with_log: bool) -> tuple[dict[int, Any], int]:
    from orchestrai.batch import BatchOptions, LocalExecutor, run_batch

    results = root / "results.jsonl"
    summary = await run_batch(BatchOptions(root / "pipeline.yml", root / "rows.jsonl", config=root / "config.yml",
                                           results=results, concurrency=4, use_cache=False, write_logs=with_log),
                              executor=LocalExecutor(4))
    outputs = {}
    with results.open(encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            outputs[entry["row"]] = entry["outputs"].get("third")
    return outputs, summary.failed


def child(mode: str, root: Path, rows: int) -> dict[str, Any]:
    import orchestrai.batch  # noqa: F401  # imports are setup, not the rows' cost
    import orchestrai.engine.runner  # noqa: F401

    gc.collect()
    rss_before = status_kb("VmRSS")
    reset_peak()
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode.startswith("loop"):
        outputs, failed = asyncio.run(run_loop(root, rows, mode == "loop+log"))
    else:
        outputs, failed = asyncio.run(run_rows(root, mode == "batch+log"))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"mode": mode, "rows": rows, "wall_s": wall, "cpu_s": cpu, "failed": failed, "outputs": digest(outputs),
            "complete": len(outputs) == rows, "peak_rss_growth_mb": (status_kb("VmHWM") - rss_before) / 1024,
            "peak_rss_mb": status_kb("VmHWM") / 1024}


def run_child(mode: str, rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="orchestrai-batch-bench-") as folder:
        root = Path(folder)
        write_project(root, rows)
        done = subprocess.run([sys.executable, __file__, "--child", mode, "--dir", str(root), "--rows", str(rows)],
                              capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"mode": mode, "rows": rows, "error": done.stderr.strip()[-2000:] or f"exit {done.returncode}"}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(runs: dict[str, list[dict[str, Any]]], rows: int) -> str:
    """Medians; overheads are per row against `loop` (and `batch+log` also against `loop+log`)."""
    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    lines = [f"### batch: {rows:,} rows x 3 echo steps (0 ms), local executor, concurrency 4", "",
             "| mode | wall s (median, min-max) | CPU s | CPU per row µs | CPU overhead per row µs | "
             "wall overhead per row µs | peak RSS growth MB |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for mode in MODES:
        walls = [r["wall_s"] for r in runs[mode]]
        wall, cpu = median(mode, "wall_s"), median(mode, "cpu_s")
        bases = ["loop"] + (["loop+log"] if mode == "batch+log" else [])
        cpu_over = " / ".join(f"{(cpu - median(base, 'cpu_s')) / rows * 1e6:+.0f}" for base in bases)
        wall_over = " / ".join(f"{(wall - median(base, 'wall_s')) / rows * 1e6:+.0f}" for base in bases)
        if mode == "loop":
            cpu_over = wall_over = "–"
        lines.append(f"| {mode} | {wall:.2f} ({min(walls):.2f}-{max(walls):.2f}) | {cpu:.2f} | "
                     f"{cpu / rows * 1e6:.0f} | {cpu_over} | {wall_over} | {median(mode, 'peak_rss_growth_mb'):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.dir, args.rows)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(args.runs):
        for mode in MODES:
            result = run_child(mode, args.rows)
            runs[mode].append(result)
            note = result.get("error") or f"{result['wall_s']:.2f} s wall, {result['cpu_s']:.2f} s CPU"
            print(f"  {mode:10} {note}", file=sys.stderr, flush=True)
    bad = [r for rs in runs.values() for r in rs if r.get("error") or r["failed"] or not r["complete"]
           or r["outputs"] != runs["loop"][0].get("outputs")]
    if bad:
        print(f"wrong or failed runs: {bad}", file=sys.stderr)
        return 1
    text = table(runs, args.rows)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": args.rows, "runs": runs}, indent=1), encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
