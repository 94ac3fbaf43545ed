"""Rows per second of `orchestrai batch` on Ray (1 and 2 workers) against the local executor.

A 3-step chain on the echo provider with 50 ms latency per call (so a row takes >= 150 ms of model
time), ROWS rows. Each configuration runs in a fresh process: a Ray instance is started there on
127.0.0.1 with as many CPUs as workers and warmed up (the workers import orchestrai) before the
clock starts, so the figure is steady-state throughput, not Ray's start-up.

Run: python benchmarks/ray_batch.py [--rows 300] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PIPELINE = """pipeline:
  - {module: start_module, output_name: request}
  - {module: translator, inputs: [request], output_name: a}
  - {module: translator, inputs: [a], output_name: b}
  - {module: translator, inputs: [b], output_name: c}
"""


def project(root: Path, rows: int, latency: float) -> None:
    (root / "system_prompts").mkdir(parents=True, exist_ok=True)
    (root / "system_prompts" / "translator.md").write_text("Translate the text into French.\n")
    (root / "config.yml").write_text(f"providers:\n  echo: {{type: echo, latency_s: {latency}}}\n"
                                     "default_model_config: {provider: echo, model: echo-1}\ncache: false\n")
    (root / "chain.yml").write_text(PIPELINE)
    (root / "rows.jsonl").write_text("".join(json.dumps({"request": f"row {i}"}) + "\n" for i in range(rows)))


def child(root: Path, executor: str, workers: int) -> dict[str, float]:
    from orchestrai.batch import BatchOptions, LocalExecutor, run_batch

    def options(name: str) -> BatchOptions:
        return BatchOptions(root / "chain.yml", root / name, config=root / "config.yml",
                            results=root / f"{name}.{executor}{workers}.jsonl", write_logs=False)

    if executor == "ray":
        from orchestrai.cluster.connect import start_local
        from orchestrai.cluster.executor import RayExecutor

        start_local(workers)
        (root / "warm.jsonl").write_text("".join(json.dumps({"request": f"w{i}"}) + "\n" for i in range(4 * workers)))
        asyncio.run(run_batch(options("warm.jsonl"), executor=RayExecutor()))
        make = lambda: RayExecutor()  # noqa: E731
    else:
        make = lambda: LocalExecutor(workers)  # noqa: E731
    started = time.perf_counter()
    summary = asyncio.run(run_batch(options("rows.jsonl"), executor=make()))
    elapsed = time.perf_counter() - started
    rate = round(summary.completed / elapsed, 2)
    return {"rows": summary.completed, "seconds": round(elapsed, 2), "rows_per_s": rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--child", nargs=3, metavar=("ROOT", "EXECUTOR", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1], int(args.child[2]))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project(root, args.rows, args.latency)
        for executor, workers in (("ray", 1), ("ray", 2), ("local", 1), ("local", 2)):
            done = subprocess.run([sys.executable, __file__, "--child", str(root), executor, str(workers)],
                                  capture_output=True, text=True, check=True)
            print(f"{executor:5} workers/rows at once={workers}: {done.stdout.strip().splitlines()[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
