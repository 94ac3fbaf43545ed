"""One measured run in a fresh process: `python benchmarks/child.py ENGINE WORKLOAD [--quick]`.

Prints one JSON line: the run's wall time (around `asyncio.run` of the engine only), setup and
load times, client CPU time, peak RSS during the run, memory growth per step (per item for
`fanout`, per iteration for `loop`: `units`), and whether every node's (item's, iteration's)
output equals the reference. run.py starts one of these per run and aggregates.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from floor import Work, run_fanout_floor, run_floor, run_loop_floor  # noqa: E402
from workloads import (  # noqa: E402
    LOOP_ID,
    MODEL,
    Node,
    Workload,
    build,
    echo_reply,
    fanout_outputs,
    loop_outputs,
    reference_outputs,
    sinks,
    user_message,
)

# floor-httpx: http only, see below; floor-tasks: loop only, each body step in a task (run.py says why)
ENGINES = ("orchestrai", "orchestrai+log", "floor", "floor-tasks", "floor-httpx", "langgraph")
SYSTEM_PROMPT = "You echo your input."


def rss_kb() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]


def hwm_kb() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))  # type: ignore[union-attr]


def reset_peak() -> bool:
    """Reset the peak RSS (Linux >= 4.0), so the peak after the run is the run's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class FdSampler:
    """Samples the number of open file descriptors every few ms while the run goes."""

    def __init__(self) -> None:
        self.peak = open_fds()

    async def sample(self) -> None:
        while True:
            self.peak = max(self.peak, open_fds())
            await asyncio.sleep(0.005)


def sleep_work(latency: float, finished: dict[str, float]) -> Work:
    async def work(node: Node, inputs: list[tuple[str, str]]) -> str:
        if latency:
            await asyncio.sleep(latency)
        out = echo_reply(inputs, node.supplement)
        finished[node.name] = time.time()
        return out

    return work


def sdk_client(base_url: str, transport: str) -> tuple[Any, str]:
    """The openai client the floor (and LangGraph) call: orchestrai's own transport choice, same timeout.

    `make_http_client` is what orchestrai's providers use, so the floor pays the same SDK and HTTP
    stack and the comparison measures orchestrai's own cost. transport "httpx" is the plain SDK default.
    """
    import openai

    from orchestrai.providers.sdk_client import make_http_client

    http_client, used = make_http_client(openai, 60, transport)
    extra = {"http_client": http_client} if http_client is not None else {}
    return openai.AsyncOpenAI(api_key="bench-key", base_url=base_url, max_retries=0, timeout=60, **extra), used


def process_cpu_s(pid: int) -> float:
    """utime + stime of another process, from /proc (the loopback server's CPU)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sdk_work(client: Any, finished: dict[str, float]) -> Work:
    """A node that makes the same request orchestrai's chameleon step makes, through the openai SDK."""

    async def work(node: Node, inputs: list[tuple[str, str]]) -> str:
        response = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "system", "content": SYSTEM_PROMPT},
                                   {"role": "user", "content": user_message(inputs, node.supplement)}])
        finished[node.name] = time.time()
        return response.choices[0].message.content

    return work


async def closing(run: Any, client: Any) -> Any:
    """Await the run, then close the SDK client (and its connections), as orchestrai closes its providers."""
    try:
        return await run
    finally:
        if client is not None:
            await client.close()


def http_client_for(server: LoopbackServer | None, result: dict[str, Any]) -> Any:
    """The floor's and LangGraph's openai client for the http workload (None for the others)."""
    if server is None:
        return None
    client, result["transport"] = sdk_client(server.base_url, os.environ.get("ORCHESTRAI_HTTP_TRANSPORT", ""))
    return client


class LoopbackServer:
    """benchmarks/loopback_server.py in its own process."""

    def __init__(self, latency: float) -> None:
        self.process = subprocess.Popen([sys.executable, str(HERE / "loopback_server.py"), "--latency", str(latency)],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("workload")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--transport", choices=("aiohttp", "httpx"),
                        help="http: the SDK's HTTP transport for every engine (default: what orchestrai picks, "
                             "ORCHESTRAI_HTTP_TRANSPORT or aiohttp); floor-httpx is the floor with httpx")
    parser.add_argument("--profile", metavar="FILE", help="profile the run with pyinstrument; text report to FILE")
    parser.add_argument("--memory", action="store_true",
                        help="trace the run's Python allocations (tracemalloc): exact memory, inflated times")
    args = parser.parse_args()
    workload = build(args.workload, quick=args.quick)
    http = workload.name == "http"
    result: dict[str, Any] = {"engine": args.engine, "workload": workload.name, "steps": workload.steps,
                              "units": workload.units, "unit": workload.unit, "ideal_s": workload.ideal_s}
    server = LoopbackServer(workload.latency_s) if http else None
    try:
        with tempfile.TemporaryDirectory(prefix="orchestrai-bench-") as tmp:
            if http:
                transport = "httpx" if args.engine == "floor-httpx" else args.transport
                if transport:  # orchestrai's providers read it when they create their client
                    os.environ["ORCHESTRAI_HTTP_TRANSPORT"] = transport
            measure(args.engine, workload, Path(tmp), server, result, args.profile, args.memory)
    finally:
        if server is not None:
            result["server"] = server.stats()
            server.stop()
    result["process_peak_rss_mb"] = round(max(result.pop("_hwm_before_kb"), hwm_kb()) / 1024, 1)
    print(json.dumps(result))


def floor_run(workload: Workload, work: Work, tasks: bool = False) -> Any:
    if workload.shape == "fanout":
        return run_fanout_floor(workload, work)
    if workload.shape == "loop":
        return run_loop_floor(workload, work, tasks=tasks)
    return run_floor(workload.nodes, work, workload.max_concurrency)


def langgraph_run(workload: Workload, work: Work) -> Any:
    """A function making the coroutine that runs the compiled graph (compiled here, outside the timing)."""
    if workload.shape == "dag":
        from langgraph_dag import build_graph, run_langgraph

        compiled = build_graph(workload.nodes, work)
        return lambda: run_langgraph(compiled, workload.max_concurrency)
    from langgraph_control import build_fanout_graph, build_loop_graph, run_fanout_langgraph, run_loop_langgraph

    if workload.shape == "fanout":
        fanout = build_fanout_graph(workload, work)
        return lambda: run_fanout_langgraph(fanout)
    loop = build_loop_graph(workload, work)
    return lambda: run_loop_langgraph(loop, workload)


def orchestrai_outputs(workload: Workload, outcome: Any,
                       result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(every output by record id, the run's final outputs keyed as the reference's sinks).

    For a fan-out or loop, every record counts (each item, each iteration's body steps and the
    fan-out step / loop itself), and the fan-out's / loop's own details must say it ran them all.
    """
    if workload.shape == "dag":
        return dict(outcome.outputs), dict(outcome.outputs)
    outputs = {record.id: record.output for record in outcome.records}
    records = {record.id: record for record in outcome.records}
    if workload.shape == "fanout":
        name = workload.nodes[1].name
        expected: dict[str, Any] = {"items": workload.repeat, "failed_items": None}
        finals = {sink: outcome.outputs.get(sink) for sink in sinks(workload)}
    else:
        name = LOOP_ID
        expected = {"iterations": workload.repeat, "stopped": "max_iterations"}
        finals = {LOOP_ID: outcome.outputs.get("final")}
    details = records[name].details if name in records else {}
    wrong = {key: details.get(key) for key, value in expected.items() if (details.get(key) or None) != value}
    if wrong:
        result["mismatch"] = f"record {name!r} details {wrong}, expected {expected}"
    return outputs, finals


def first_mismatch(outputs: dict[str, Any], reference: dict[str, Any]) -> str:
    """The first key that differs, for the report: a wrong run should say where it went wrong."""
    missing = [key for key in reference if key not in outputs]
    extra = [key for key in outputs if key not in reference]
    if missing or extra:
        return f"{len(missing)} outputs missing (first {missing[:3]}), {len(extra)} unexpected (first {extra[:3]})"
    key = next(key for key, value in reference.items() if outputs[key] != value)
    return f"{key}: {str(outputs[key])[:120]!r} != {str(reference[key])[:120]!r}"


def measure(engine: str, workload: Workload, tmp: Path, server: LoopbackServer | None, result: dict[str, Any],
            profile: str | None = None, memory: bool = False) -> None:
    finished: dict[str, float] = {}
    imports_started = time.perf_counter()
    if server is not None:
        import openai  # noqa: F401 - imported before the clock starts, for every engine alike
        # (with aiohttp installed, `import openai` also imports aiohttp: its adapter is imported eagerly)
    if engine.startswith("orchestrai"):
        from orchestrai_dag import write_project

        from orchestrai import MemoryLog, Project, RunOptions, run_pipeline
        from orchestrai.engine import runner  # noqa: F401 - the engine itself, not just the lazy names

        result["import_s"] = time.perf_counter() - imports_started
        setup_started = time.perf_counter()
        config_path, pipeline_path = write_project(tmp, workload, base_url=server.base_url if server else None)
        result["setup_s"] = time.perf_counter() - setup_started  # generating the YAML
        rss_before_load = rss_kb()
        load_started = time.perf_counter()
        project = Project.open(config_path)
        graph = project.load(pipeline_path)
        result["load_s"] = time.perf_counter() - load_started  # load + validate
        result["load_kb_per_step"] = (rss_kb() - rss_before_load) / workload.steps
        hooks = [MemoryLog(tmp / "logs")] if engine == "orchestrai+log" else []
        options = RunOptions(run_inputs={}, max_concurrency=workload.max_concurrency or 1_000_000_000)
        coroutine = lambda: run_pipeline(graph, project.config, project.registry, options, hooks=hooks)  # noqa: E731
    elif engine == "langgraph":
        import langgraph.graph  # noqa: F401

        result["import_s"] = time.perf_counter() - imports_started
        client = http_client_for(server, result)
        work = sdk_work(client, finished) if client else sleep_work(workload.latency_s, finished)
        setup_started = time.perf_counter()
        run_graph = langgraph_run(workload, work)
        result["setup_s"] = time.perf_counter() - setup_started  # building and compiling the graph
        coroutine = lambda: closing(run_graph(), client)  # noqa: E731
    else:
        result["import_s"] = time.perf_counter() - imports_started
        client = http_client_for(server, result)
        work = sdk_work(client, finished) if client else sleep_work(workload.latency_s, finished)
        result["setup_s"] = 0.0
        coroutine = lambda: closing(floor_run(workload, work, engine == "floor-tasks"), client)  # noqa: E731

    sampler = FdSampler()

    async def timed() -> Any:
        sampling = asyncio.create_task(sampler.sample()) if server else None
        started = time.perf_counter()
        try:
            return await coroutine(), time.perf_counter() - started
        finally:
            if sampling:
                sampling.cancel()

    gc.collect()
    result["_hwm_before_kb"] = hwm_kb()
    rss_before = rss_kb()
    result["peak_reset"] = reset_peak()
    server_cpu_started = process_cpu_s(server.process.pid) if server is not None else 0.0
    cpu_started, wall_started, run_started_at = time.process_time(), time.perf_counter(), time.time()
    if memory:  # the peak of memory allocated during the run, above what was allocated before it
        import tracemalloc

        tracemalloc.start()
        outcome, inner_s = asyncio.run(timed())
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result["traced_peak_kb_per_step"] = peak / 1024 / workload.units  # per item / iteration for those
        result["traced_kept_kb_per_step"] = current / 1024 / workload.units  # still held after the run (the result)
    elif profile:  # figures are then inflated by the profiler; use them for the shape, not the times
        from pyinstrument import Profiler

        with Profiler(interval=0.0002) as profiler:
            outcome, inner_s = asyncio.run(timed())
        Path(profile).write_text(profiler.output_text(unicode=True, show_all=False), encoding="utf-8")
    else:
        outcome, inner_s = asyncio.run(timed())
    result["wall_s"] = time.perf_counter() - wall_started  # asyncio.run included: loop setup and teardown
    result["cpu_s"] = time.process_time() - cpu_started
    result["inner_s"] = inner_s
    # VmHWM, not getrusage's ru_maxrss: in a child, ru_maxrss also counts the parent's RSS at exec
    # time (the kernel carries it over), which would hide a small engine's own peak.
    peak_kb = hwm_kb()
    result["peak_rss_mb"] = round(peak_kb / 1024, 1)
    result["kb_per_step"] = (peak_kb - rss_before) / workload.units
    result["end_to_end_s"] = (time.perf_counter() - PROCESS_START) - result["setup_s"]
    if server is not None:
        result["peak_fds"] = sampler.peak

    reference = reference_outputs(workload)
    if engine.startswith("orchestrai"):
        outputs, finals = orchestrai_outputs(workload, outcome, result)
        result["status"] = outcome.status
        for record in outcome.records:
            finished[record.id] = record.finished_at or 0.0
        errors = [r.error for r in outcome.records if r.error]
        result["errors"] = len(errors)
        if errors:
            result["first_error"] = errors[0][:300]
    else:
        outputs = fanout_outputs(outcome, workload) if workload.shape == "fanout" else \
            loop_outputs(outcome, workload) if workload.shape == "loop" else outcome
        finals = outputs
        result["status"] = "completed" if len(outputs) == len(reference) else "incomplete"
        result["errors"] = 0
    result["outputs_ok"] = outputs == reference and not result.get("mismatch")
    if outputs != reference:
        result["mismatch"] = "; ".join(filter(None, [first_mismatch(outputs, reference), result.get("mismatch")]))
    result["final_ok"] = all(finals.get(name) == reference[name] for name in sinks(workload))
    result["output_kb_per_step"] = sum(sys.getsizeof(v) for v in reference.values()) / 1024 / workload.units
    if server is not None:
        first = [finished.get(n.name, 0.0) for n in workload.nodes if not n.parents]
        second = [finished.get(n.name, 0.0) for n in workload.nodes if n.parents]
        result["wave1_s"] = max(first) - run_started_at
        result["wave2_s"] = max(second) - max(first)
        result["cpu_us_per_call"] = result["cpu_s"] / workload.steps * 1e6
        # The loopback server runs on the same cores: its CPU per call is time the client could not use.
        server_cpu_s = process_cpu_s(server.process.pid) - server_cpu_started
        result["server_cpu_us_per_call"] = server_cpu_s / workload.steps * 1e6
        if "transport" not in result:  # orchestrai's engines: what its providers picked (the same function)
            import openai

            from orchestrai.providers.sdk_client import make_http_client

            result["transport"] = make_http_client(openai, 60)[1]


if __name__ == "__main__":
    main()
