"""Rows on a Ray cluster that the tests start on 127.0.0.1: results, limits and budget across
workers, a worker killed mid-batch, loopback-only sockets, and failing fast on a dead address."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer

ray = pytest.importorskip("ray")

from orchestrai.cluster.connect import RayUnavailable, connect, import_ray, start_local  # noqa: E402
from orchestrai.cluster.executor import RayExecutor  # noqa: E402
from orchestrai.cluster.job import PipelineRowJob  # noqa: E402

pytestmark = pytest.mark.slow

ONE_STEP = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: translator, inputs: [request], output_name: translated}
    """
TWO_STEPS = ONE_STEP + "  - {module: scrutinizer, inputs: [translated], output_name: summary}\n"


@pytest.fixture(scope="module")
def cluster() -> Any:
    """One local Ray instance with 2 CPUs (two workers) for the module, on loopback only."""
    start_local(num_cpus=2)
    yield ray
    ray.shutdown()


def config(project: Path, server: FakeLLMServer, extra: str = "") -> Path:
    # A literal key: the workers inherit the environment Ray was started with, not the test's.
    return write(project / "config.yml", textwrap.dedent(f"""
        providers:
          openai: {{base_url: {server.base_url}, api_key: sk-test-ray-0123456789, timeout_s: 10}}
        default_model_config: {{model: gpt-4o-mini}}
        retry: {{max_attempts: 2, base_delay_s: 0.01, max_delay_s: 0.05}}
        log_dir: logs
        cache: false
        """) + extra)


def rows(n: int) -> list[tuple[int, dict[str, Any]]]:
    return [(i, {"request": f"question-{i:03d}"}) for i in range(n)]


def run_on_ray(job: PipelineRowJob, data: list[tuple[int, dict[str, Any]]], **executor: Any) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [result async for result in RayExecutor(**executor).run_rows(data, job)]

    return asyncio.run(collect())


def run_here(job: PipelineRowJob, data: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        state = job.open(None)
        try:
            return [await job.run(state, row, inputs) for row, inputs in data]
        finally:
            await job.close(state)

    return asyncio.run(collect())


def requests_for(server: FakeLLMServer, text: str) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/chat/completions") and text in r.last_user_text)


def test_results_equal_the_in_process_runs(cluster: Any, project: Path, fake_server: FakeLLMServer) -> None:
    path = config(project, fake_server)
    write(project / "two.yml", TWO_STEPS)
    job = PipelineRowJob.prepare("two.yml", config=path)
    on_ray = sorted(run_on_ray(job, rows(6)), key=lambda r: r["row"])
    here = run_here(job, rows(6))
    assert [r["status"] for r in on_ray] == ["completed"] * 6
    assert [r["outputs"] for r in on_ray] == [r["outputs"] for r in here]
    assert "question-004" in on_ray[4]["outputs"]["translated"]
    assert all(Path(r["log"]).is_file() for r in on_ray)  # each row's memory log, written by its worker
    assert len({r["pid"] for r in on_ray}) == 2  # both workers ran rows


def test_max_concurrent_holds_at_the_server_across_workers(cluster: Any, project: Path,
                                                           fake_server: FakeLLMServer) -> None:
    path = config(project, fake_server, "rate_limits:\n  openai: {max_concurrent: 1}\n")
    write(project / "one.yml", ONE_STEP)
    fake_server.latency_s = 0.15
    results = run_on_ray(PipelineRowJob.prepare("one.yml", config=path), rows(8))
    assert [r["status"] for r in results] == ["completed"] * 8
    assert len({r["pid"] for r in results}) == 2  # two processes, one limit
    assert fake_server.max_in_flight == 1


def test_requests_per_window_hold_at_the_server_across_workers(cluster: Any, project: Path,
                                                               fake_server: FakeLLMServer) -> None:
    """4 requests per window; the window is shortened to 2.5 s (+0.5 s margin) so the test takes seconds."""
    path = config(project, fake_server, "rate_limits:\n  openai: {requests_per_minute: 4}\n")
    write(project / "one.yml", ONE_STEP)
    results = run_on_ray(PipelineRowJob.prepare("one.yml", config=path), rows(10), window_s=3.0)
    assert [r["status"] for r in results] == ["completed"] * 10
    times = sorted(r.received_at for r in fake_server.requests if r.path.endswith("/chat/completions"))
    assert len(times) == 10
    worst = max(sum(1 for t in times if start <= t < start + 2.5) for start in times)
    assert worst <= 4, f"{worst} requests reached the server within one window"
    assert times[4] - times[0] >= 2.5  # the fifth waited for the first to leave the window


def test_the_budget_is_one_for_all_workers(cluster: Any, project: Path, fake_server: FakeLLMServer) -> None:
    """Each row costs ~$0.02 but reserves ~$0.1: one $0.35 budget stops the batch; one per worker would not."""
    path = config(project, fake_server, "pricing: {gpt-4o-mini: {input: 1000.0, output: 1000.0}}\n")
    write(project / "one.yml", ONE_STEP.replace("output_name: translated}",
                                                "output_name: translated, model_config: {max_tokens: 60}}"))
    results = run_on_ray(PipelineRowJob.prepare("one.yml", config=path, budget_usd=0.35), rows(20))
    statuses = [r["status"] for r in results]
    assert "completed" in statuses and "budget_exceeded" in statuses
    spent = sum(r["totals"]["cost_usd"] or 0 for r in results)
    assert 0 < spent <= 0.35
    requests = sum(1 for r in fake_server.requests if r.path.endswith("/chat/completions"))
    assert requests == statuses.count("completed")


def _row_workers() -> list[Any]:
    import psutil

    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if " ".join(process.cmdline()).startswith("ray::run_row"):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_a_worker_killed_mid_batch_loses_no_row_and_reruns_no_finished_row(
        cluster: Any, project: Path, fake_server: FakeLLMServer) -> None:
    path = config(project, fake_server)
    write(project / "one.yml", ONE_STEP)
    fake_server.latency_s = 0.4
    job = PipelineRowJob.prepare("one.yml", config=path)
    finished_before_kill: list[int] = []
    killed: list[int] = []

    async def collect() -> list[dict[str, Any]]:
        results = []
        async for result in RayExecutor().run_rows(rows(10), job):
            results.append(result)
            if len(results) == 2 and not killed:
                finished_before_kill.extend(r["row"] for r in results)
                for _ in range(200):  # between two rows a worker is briefly idle
                    workers = _row_workers()
                    if workers:
                        killed.append(workers[0].pid)
                        os.kill(workers[0].pid, signal.SIGKILL)
                        break
                    await asyncio.sleep(0.01)
        return results

    results = asyncio.run(collect())
    assert killed, "no worker was running a row"
    assert sorted(r["row"] for r in results) == list(range(10))  # every row exactly once
    assert [r["status"] for r in results] == ["completed"] * 10
    for row in finished_before_kill:  # a finished row never ran again
        assert requests_for(fake_server, f"question-{row:03d}") == 1
    assert killed[0] not in {r["pid"] for r in results if r["row"] not in finished_before_kill}


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_no_socket_of_the_run_listens_beyond_loopback(cluster: Any, project: Path,
                                                      fake_server: FakeLLMServer) -> None:
    import psutil

    path = config(project, fake_server)
    write(project / "one.yml", ONE_STEP)
    run_on_ray(PipelineRowJob.prepare("one.yml", config=path), rows(4))
    ours = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in ours]
    assert len({c.pid for c in listening}) >= 3  # the driver, the GCS, the raylet, the workers: really looked
    outside = [(c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name()) for c in listening
               if not _is_loopback(c.laddr.ip)]
    assert outside == []
    assert _is_loopback(ray.get_runtime_context().gcs_address.rsplit(":", 1)[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_address_fails_at_once_naming_it(cluster: Any) -> None:
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(RayUnavailable) as caught:
        connect(address)
    assert f"Ray cluster at {address} is unreachable" in caught.value.message


def test_an_address_that_is_no_ray_cluster_fails_within_the_timeout(fake_server: FakeLLMServer) -> None:
    """Something answers TCP but is not Ray: a plain ray.init would retry for minutes."""
    address = f"127.0.0.1:{fake_server.port}"
    code = ("import sys\nfrom orchestrai.cluster.connect import connect, RayUnavailable\n"
            f"try:\n    connect({address!r}, connect_timeout_s=5)\n"
            "except RayUnavailable as exc:\n    print(exc.message); sys.exit(3)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_gcs_rpc_server_connect_timeout_s": "2"})
    assert done.returncode == 3, done.stderr[-2000:]
    assert f"Ray cluster at {address} is unreachable" in done.stdout


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(RayUnavailable) as caught:
        import_ray()
    assert "orchestrai[ray]" in str(caught.value)
