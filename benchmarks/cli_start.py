"""Cold start of the CLI: whole `orchestrai` processes, timed from spawn to exit.

    python benchmarks/cli_start.py [--runs 20]     # this table alone

Each command runs once to warm the OS file cache and Python's bytecode cache (as after an install),
then `runs` times, the commands taking turns; a separate process reports which heavy libraries the
command imported. This machine sets PYTHONDONTWRITEBYTECODE, which would make every run compile
orchestrai's own ~40 modules again (~10% of a `validate`) where an installed wheel has their
bytecode: the runs write and read bytecode in a temporary PYTHONPYCACHEPREFIX instead. The command is
the console script installed beside this interpreter, not whatever `orchestrai` comes first on PATH
(a pyenv shim, for one, adds ~80 ms before Python starts). The `python -c pass` row is the
interpreter's own start, with this machine's site-packages hooks.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("openai", "anthropic", "wandb", "httpx", "networkx", "pydantic", "jinja2", "rich", "typer", "yaml",
         "llama_cpp")
COMMANDS = {
    "python -c pass": None,  # the interpreter's own start (with this machine's site-packages), for reference
    "--help": ["--help"],
    "validate": ["validate", "pipelines/planning.yml"],
    "run --dry-run": ["run", "--dry-run", "pipelines/planning.yml", "--input", "request=x", "--log-dir", "{tmp}"],
}
TARGETS_S = {"--help": 0.25, "validate": 0.4}

# Runs the CLI in-process the way the console script does, then lists the heavy modules it imported.
_IMPORT_PROBE = """
import sys
from orchestrai.cli.app import main
sys.argv = ["orchestrai", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
heavy = sorted({name.split(".")[0] for name in list(sys.modules)} & set(%r))
print("\\nIMPORTED:" + ",".join(heavy), file=sys.stderr)
"""


def imported_by(args: list[str], env: dict[str, str]) -> str:
    """The heavy libraries `orchestrai ARGS` imports, comma-separated."""
    probe = subprocess.run([sys.executable, "-c", _IMPORT_PROBE % (HEAVY,), *args], cwd=REPO, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return probe.stderr.rsplit("IMPORTED:", 1)[-1].strip() if "IMPORTED:" in probe.stderr else "?"


def command_line() -> list[str]:
    """The console script pip installed for this interpreter (not a pyenv shim), else the one on PATH."""
    beside = Path(sys.executable).with_name("orchestrai")
    script = str(beside) if beside.is_file() else shutil.which("orchestrai")
    return [script] if script else [sys.executable, "-m", "orchestrai"]


def measure_cli(runs: int) -> list[dict[str, Any]]:
    """Median and min-max wall time (and median CPU time) of each command, and what it imported."""
    with tempfile.TemporaryDirectory(prefix="orchestrai-bench-cli-") as tmp:
        env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
        env.update(XDG_CONFIG_HOME=f"{tmp}/xdg-config", XDG_CACHE_HOME=f"{tmp}/xdg-cache",
                   PYTHONPYCACHEPREFIX=f"{tmp}/pycache")
        commands = {name: [sys.executable, "-c", "pass"] if args is None else
                    [*command_line(), *(a.replace("{tmp}", tmp) for a in args)] for name, args in COMMANDS.items()}
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for attempt in range(runs + 1):  # the first round only warms the caches
            for name, command in commands.items():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.perf_counter()
                done = subprocess.run(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                elapsed = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
                if attempt:
                    times[name].append(elapsed)
                    cpu[name].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        results = []
        for name, args in COMMANDS.items():
            imported = "" if args is None else imported_by(commands[name][len(command_line()):], env)
            results.append({"command": name, "median_s": statistics.median(times[name]), "min_s": min(times[name]),
                            "max_s": max(times[name]), "runs": len(times[name]),
                            "cpu_median_s": statistics.median(cpu[name]), "target_s": TARGETS_S.get(name),
                            "imported": imported})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Cold start of the orchestrai CLI.")
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    load_before = os.getloadavg()[0]
    rows = measure_cli(runs)
    load_after = os.getloadavg()[0]
    print(f"{runs} runs each, in turns; 1-minute load average {load_before:.2f} before, {load_after:.2f} after\n")
    print("| command | wall s median (min–max) | CPU s median | target | heavy imports |")
    print("|---|---|---|---|---|")
    for row in rows:
        target = f"< {row['target_s']} s" if row["target_s"] else "–"
        print(f"| `{row['command']}` | {row['median_s']:.3f} ({row['min_s']:.3f}–{row['max_s']:.3f}) | "
              f"{row['cpu_median_s']:.3f} | {target} | {row['imported'] or '–'} |")


if __name__ == "__main__":
    main()
