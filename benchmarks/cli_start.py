"""Cold start of the CLI: whole `orchestrai` processes, timed from spawn to exit.

Each command runs once to warm the OS file cache and Python's bytecode cache (as after an
install), then `runs` times; a separate process reports which heavy libraries the command imported.
"""

from __future__ import annotations

import os
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
    script = shutil.which("orchestrai")
    return [script] if script else [sys.executable, "-m", "orchestrai"]


def measure_cli(runs: int) -> list[dict[str, Any]]:
    """Median and min-max wall time of each command, and what it imported."""
    results = []
    with tempfile.TemporaryDirectory(prefix="orchestrai-bench-cli-") as tmp:
        env = {**os.environ, "XDG_CONFIG_HOME": f"{tmp}/xdg-config", "XDG_CACHE_HOME": f"{tmp}/xdg-cache"}
        for name, args in COMMANDS.items():
            command = [sys.executable, "-c", "pass"] if args is None else [
                *command_line(), *(a.replace("{tmp}", tmp) for a in args)]
            times = []
            for attempt in range(runs + 1):
                started = time.perf_counter()
                done = subprocess.run(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                elapsed = time.perf_counter() - started
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
                if attempt:  # the first run only warms the caches
                    times.append(elapsed)
            imported = "" if args is None else imported_by(command[len(command_line()):], env)
            results.append({"command": name, "median_s": statistics.median(times), "min_s": min(times),
                            "max_s": max(times), "runs": len(times), "target_s": TARGETS_S.get(name),
                            "imported": imported})
    return results
