"""Benchmarks: orchestrai against the asyncio floor and LangGraph, and the CLI's cold start.

    python benchmarks/run.py                       # everything, 5 runs each, about 18 minutes
    python benchmarks/run.py --workloads chain,wide --runs 7
    python benchmarks/run.py --workloads fanout,loop    # issue 11: foreach (10,000 items) and loop (1,000 iterations)
    python benchmarks/run.py --quick               # tiny sizes, 1 run: checks the harness works

Each run is a fresh process (benchmarks/child.py) so imports, caches and memory start clean.
Within a workload the engines take turns run by run, so a change in machine load hits all of them
alike. Prints one table per workload (Markdown) and whether each target of issues 5 and 11 is met;
`--markdown FILE` / `--json FILE` save them. Exit status 1 if any run failed or produced a
wrong output (timings never fail it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cli_start import measure_cli  # noqa: E402
from workloads import CONTROL_WORKLOADS, DAG_WORKLOADS, build  # noqa: E402

ALL_WORKLOADS = (*DAG_WORKLOADS, *CONTROL_WORKLOADS, "http", "cli")
# floor-httpx: the floor through the SDK's default httpx client, a reference row for http only.
# floor-tasks: the loop's floor with each body step in its own asyncio task (as the DAG floor runs every
# node), a reference row for loop only: the plain floor's steps never reach the event loop.
ALL_ENGINES = ("orchestrai", "orchestrai+log", "floor", "floor-tasks", "floor-httpx", "langgraph")
# Targets: <= 2x floor (log off), <= 4x (log on), >= 8x below LangGraph.
OVERHEAD_TARGETS = ("chain", "wide", "wide-capped", "layered")
# Issue 11: per fan-out item and per loop iteration, <= 2x floor (log off), <= 4x (log on).
CONTROL_TARGETS = CONTROL_WORKLOADS
LOADS: dict[str, list[float]] = {}  # workload -> 1-minute load average before and after it ran


def langgraph_available() -> bool:
    try:
        import langgraph.graph  # noqa: F401
    except ImportError:
        return False
    return True


def run_child(engine: str, workload: str, quick: bool, memory: bool = False) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "child.py"), engine, workload, *(["--quick"] if quick else []),
               *(["--memory"] if memory else [])]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"engine": engine, "workload": workload,
                "failed": done.stderr.strip()[-2000:] or f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_all(workloads: list[str], engines: list[str], runs: int, quick: bool, jobs: int,
            traced: bool = True) -> tuple[dict[str, dict[str, list]], dict[str, dict[str, dict]]]:
    """({workload: {engine: [timed runs]}}, {workload: {engine: memory run}}); engines take turns run by run.

    Memory comes from one more run per engine under tracemalloc (exact, but slow), not from the timed runs.
    """
    results: dict[str, dict[str, list]] = {}
    memory: dict[str, dict[str, dict]] = {}
    for workload in workloads:
        LOADS[workload] = [os.getloadavg()[0]]
        # http measures the SDK and HTTP stack, which LangGraph nodes would share; tracemalloc would slow
        # the SDK into timeouts, so http has no memory run (peak RSS is there).
        those = [e for e in engines if not (workload == "http" and e == "langgraph")
                 and not (workload != "http" and e == "floor-httpx")
                 and not (workload != "loop" and e == "floor-tasks")]
        plan = [(engine, workload, False) for _ in range(runs) for engine in those]
        plan += [] if workload == "http" or not traced else [(engine, workload, True) for engine in those]
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            done = list(pool.map(lambda job: run_child(job[0], job[1], quick, job[2]), plan))
        for (engine, _, traced), result in zip(plan, done, strict=True):
            if traced:
                memory.setdefault(workload, {})[engine] = result
                continue
            results.setdefault(workload, {}).setdefault(engine, []).append(result)
            note = result.get("failed") or \
                f"{result['wall_s']:.3f} s, outputs {'ok' if result['outputs_ok'] else 'WRONG'}"
            print(f"  {workload:12} {engine:15} {note}", file=sys.stderr, flush=True)
        LOADS[workload].append(os.getloadavg()[0])
    return results, memory


# --- aggregation -----------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str) -> str:
    """median (min–max), or just the value for one run."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(med(values), fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def overhead_us(run: dict[str, Any]) -> float:
    """Per step; per item for a fan-out and per iteration for a loop (`units`)."""
    return (run["wall_s"] - run["ideal_s"]) / run.get("units", run["steps"]) * 1e6


def summarize(results: dict[str, dict[str, list]],
              memory: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Medians per workload and engine (only runs that completed with correct outputs), and memory per step."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for workload, by_engine in results.items():
        for engine, runs in by_engine.items():
            good = [r for r in runs if not r.get("failed") and r["outputs_ok"] and r["errors"] == 0]
            row: dict[str, Any] = {"runs": len(runs), "good": len(good)}
            if good:
                row["overhead_us"] = med([overhead_us(r) for r in good])
                row["wall_s"] = med([r["wall_s"] for r in good])
                for key in ("output_kb_per_step", "peak_rss_mb", "end_to_end_s", "load_s", "wave1_s", "wave2_s"):
                    if key in good[0]:
                        row[key] = med([r[key] for r in good])
            traced = memory.get(workload, {}).get(engine, {})
            if "traced_peak_kb_per_step" in traced:
                row["kb_per_step"] = traced["traced_peak_kb_per_step"]
            summary.setdefault(workload, {})[engine] = row
    return summary


def workload_table(workload: str, by_engine: dict[str, list], summary: dict[str, dict[str, Any]]) -> str:
    """One row per engine: medians (min–max) of the timed runs; memory per step from the traced run."""
    floor = summary.get("floor", {}).get("overhead_us")
    spec = build(workload, quick=any(r.get("quick") for rs in by_engine.values() for r in rs))
    unit = spec.unit
    lines = [f"| engine | wall s | ideal s | overhead µs/{unit} | × floor | peak RSS MB | memory KB/{unit} | "
             "load+validate s | outputs |", "|---|---|---|---|---|---|---|---|---|"]
    for engine in ALL_ENGINES:
        runs = by_engine.get(engine)
        if not runs:
            continue
        failed = [r for r in runs if r.get("failed")]
        good = [r for r in runs if not r.get("failed")]
        if not good:
            lines.append(f"| {engine} | failed: {failed[0]['failed'].splitlines()[-1][:80]} |||||||| |")
            continue
        over = [overhead_us(r) for r in good]
        ratio = f"{med(over) / floor:.1f}" if floor and engine != "floor" else "1" if engine == "floor" else "–"
        kb = summary.get(engine, {}).get("kb_per_step")
        load = spread([r["load_s"] for r in good], ".3f") if "load_s" in good[0] else "–"
        ok = all(r["outputs_ok"] and r["errors"] == 0 for r in good) and not failed
        lines.append(f"| {engine} | {spread([r['wall_s'] for r in good], '.3f')} | {spec.ideal_s:.3f} | "
                     f"{spread(over, '.1f')} | {ratio} | {spread([r['peak_rss_mb'] for r in good], '.0f')} | "
                     f"{'–' if kb is None else format(kb, '.2f')} | {load} | "
                     f"{'all correct' if ok else 'WRONG'} ({len(good)} runs) |")
    return "\n".join(lines)


def http_table(by_engine: dict[str, list]) -> str:
    lines = ["| engine | wall s | wave 1 s (cold) | wave 2 s (warm) | client CPU µs/call | connections opened | "
             "max in flight | peak fds | errors | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for engine in ALL_ENGINES:
        good = [r for r in by_engine.get(engine, []) if not r.get("failed")]
        if not good:
            continue
        lines.append(f"| {engine} | {spread([r['wall_s'] for r in good], '.3f')} | "
                     f"{spread([r['wave1_s'] for r in good], '.3f')} | {spread([r['wave2_s'] for r in good], '.3f')} | "
                     f"{spread([r['cpu_us_per_call'] for r in good], '.0f')} | "
                     f"{spread([r['server']['connections'] for r in good], '.0f')} | "
                     f"{spread([r['server']['max_in_flight'] for r in good], '.0f')} | "
                     f"{spread([r['peak_fds'] for r in good], '.0f')} | {sum(r['errors'] for r in good)} | "
                     f"{spread([r['peak_rss_mb'] for r in good], '.0f')} |")
    return "\n".join(lines)


def cli_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| command | wall s median (min–max) | runs | target | heavy imports |", "|---|---|---|---|---|"]
    for row in rows:
        target = f"< {row['target_s']} s" if row["target_s"] else "–"
        name = row["command"] if row["command"].startswith("python") else f"orchestrai {row['command']}"
        lines.append(f"| `{name}` | {row['median_s']:.3f} ({row['min_s']:.3f}–{row['max_s']:.3f}) | "
                     f"{row['runs']} | {target} | "
                     f"{row['imported'] or ('–' if name.startswith('python') else 'none')} |")
    return "\n".join(lines)


def targets(summary: dict[str, dict[str, dict[str, Any]]],
            cli: list[dict[str, Any]] | None) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target of issue 5 that was measured."""
    checks: list[tuple[str, str, bool]] = []
    for workload in CONTROL_TARGETS:
        rows = summary.get(workload, {})
        floor = rows.get("floor", {}).get("overhead_us")
        unit = build(workload).unit
        for engine, limit in (("orchestrai", 2.0), ("orchestrai+log", 4.0)):
            ours = rows.get(engine, {}).get("overhead_us")
            if ours is not None and floor:
                checks.append((f"{workload}: {engine} overhead per {unit} ≤ {limit:g}× floor",
                               f"{ours:.1f} vs {floor:.1f} µs/{unit} = {ours / floor:.1f}×", ours <= limit * floor))
    for workload in OVERHEAD_TARGETS:
        rows = summary.get(workload, {})
        floor = rows.get("floor", {}).get("overhead_us")
        graph = rows.get("langgraph", {}).get("overhead_us")
        for engine, limit in (("orchestrai", 2.0), ("orchestrai+log", 4.0)):
            ours = rows.get(engine, {}).get("overhead_us")
            if ours is None:
                continue
            if floor:
                checks.append((f"{workload}: {engine} overhead ≤ {limit:g}× floor",
                               f"{ours:.1f} vs {floor:.1f} µs/step = {ours / floor:.1f}×", ours <= limit * floor))
            if graph:
                checks.append((f"{workload}: {engine} ≥ 8× below LangGraph",
                               f"{graph:.0f} vs {ours:.1f} µs/step = {graph / max(ours, 1e-9):.0f}×",
                               graph >= 8 * ours))
    for engine in ("orchestrai", "orchestrai+log"):
        row = summary.get("huge", {}).get(engine)
        if row and "end_to_end_s" in row and "kb_per_step" in row:
            checks.append((f"huge: {engine} end to end < 2 s (imports + load + validate + run)",
                           f"{row['end_to_end_s']:.2f} s (load+validate {row['load_s']:.2f}, run {row['wall_s']:.2f})",
                           row["end_to_end_s"] < 2.0))
            beyond = row["kb_per_step"] - row["output_kb_per_step"]
            checks.append((f"huge: {engine} memory per step beyond its output < 5 KB",
                           f"{beyond:.2f} KB ({row['kb_per_step']:.2f} KB − {row['output_kb_per_step']:.2f} KB output)",
                           beyond < 5.0))
    for engine in ("orchestrai", "orchestrai+log"):
        row = summary.get("http", {}).get(engine)
        if row and "wave2_s" in row:
            latency = build("http").latency_s
            checks.append((f"http: {engine} 1,000 concurrent calls "
                           f"< 1.5× latency ({1.5 * latency:.2f} s) + fixed start",
                           f"warm wave {row['wave2_s']:.3f} s; cold wave {row['wave1_s']:.3f} s; errors 0",
                           row["wave2_s"] < 1.5 * latency))
    for row in cli or []:
        if row["target_s"]:
            clean = not any(name in row["imported"].split(",") for name in ("openai", "anthropic", "wandb"))
            checks.append((f"`orchestrai {row['command']}` < {row['target_s']} s cold, no openai/anthropic/wandb",
                           f"{row['median_s']:.3f} s; imports {row['imported'] or 'none'}",
                           row["median_s"] < row["target_s"] and clean))
    return checks


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs ({cpu}), {memory_kb / 1024 / 1024:.1f} GiB RAM, {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}, orchestrai {ver('orchestrai')}, "
            f"langgraph {ver('langgraph')}, openai {ver('openai')}; "
            f"{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; load average {load}")


def main() -> int:
    parser = argparse.ArgumentParser(description="orchestrai benchmarks (issue 5)")
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS),
                        help=f"comma-separated, from {', '.join(ALL_WORKLOADS)} (default: all)")
    parser.add_argument("--engines", default=",".join(ALL_ENGINES), help="comma-separated (default: all available)")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs per workload and engine (default 5; 1 with --quick)")
    parser.add_argument("--cli-runs", type=int, default=None, help="runs per CLI command (default 10; 2 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and short latencies: a check that it all works")
    parser.add_argument("--jobs", type=int, default=1, help="children at once (only sensible with --quick)")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run (memory per step)")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--json", type=Path, help="also write every run's raw figures to this file")
    args = parser.parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    engines = [e for e in args.engines.split(",") if e]
    unknown = [w for w in workloads if w not in ALL_WORKLOADS] + [e for e in engines if e not in ALL_ENGINES]
    if unknown:
        parser.error(f"unknown workload or engine: {', '.join(unknown)}")
    if "langgraph" in engines and not langgraph_available():
        print("langgraph is not installed (pip install -e '.[bench]'): skipping it", file=sys.stderr)
        engines.remove("langgraph")
    runs = args.runs or (1 if args.quick else 5)
    started = time.perf_counter()
    header = machine()
    print(f"# {header}", file=sys.stderr)

    results, memory = run_all([w for w in workloads if w != "cli"], engines, runs, args.quick, args.jobs,
                              traced=not args.no_memory)
    for by_engine in results.values():
        for rs in by_engine.values():
            for r in rs:
                r["quick"] = args.quick
    cli = measure_cli(args.cli_runs or (2 if args.quick else 10)) if "cli" in workloads else None
    summary = summarize(results, memory)

    out = [f"Machine: {header}", f"Runs: {runs} per workload and engine, each in a fresh process"
           + (" (--quick sizes)" if args.quick else "") + "."]
    for workload, by_engine in results.items():
        spec = build(workload, quick=args.quick)
        load = LOADS.get(workload, [])
        load_note = f"; load average {load[0]:.1f} → {load[-1]:.1f}" if load else ""
        out += ["", f"### {workload}: {spec.description} ({spec.steps} steps{load_note})", ""]
        out.append(http_table(by_engine) if workload == "http"
                   else workload_table(workload, by_engine, summary[workload]))
    if cli is not None:
        out += ["", "### cli: cold start (whole processes)", "", cli_table(cli)]
    checks = targets(summary, cli)
    if checks and not args.quick:
        out += ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
        out += [f"| {name} | {measured} | {'yes' if met else '**no**'} |" for name, measured, met in checks]
    out += ["", f"Benchmark command took {time.perf_counter() - started:.0f} s."]
    text = "\n".join(out)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    if args.json:
        report = {"machine": header, "results": results, "memory": memory, "cli": cli}
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    every = [r for rs in results.values() for runs_ in rs.values() for r in runs_]
    every += [r for by_engine in memory.values() for r in by_engine.values()]
    broken = [r for r in every if r.get("failed") or not r["outputs_ok"] or not r["final_ok"] or r["errors"]]
    for r in broken:
        print(f"FAILED: {r['workload']} {r['engine']}: "
              f"{r.get('failed') or r.get('first_error') or r.get('mismatch') or 'wrong outputs'}",
              file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
