"""Rows on a Ray cluster that the tests start on 127.0.0.1: results, limits and budget across
workers, a worker killed mid-batch, loopback-only sockets, and failing fast on a dead address."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer

ray = pytest.importorskip("ray")

from orchestrai.batch import BatchOptions, LocalExecutor, run_batch  # noqa: E402
from orchestrai.cluster.connect import RayUnavailable, connect, import_ray, require_ray, start_local  # noqa: E402
from orchestrai.cluster.executor import RayExecutor  # noqa: E402

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


def data(project: Path, n: int) -> Path:
    path = project / "rows.jsonl"
    path.write_text("".join(json.dumps({"request": f"question-{i:03d}"}) + "\n" for i in range(1, n + 1)))
    return path


def batch(project: Path, pipeline: str, n: int, executor: Any, hooks: Any = (), **options: Any) -> list[dict[str, Any]]:
    """Run the batch; the rows of its results file, by row number."""
    results = project / f"{pipeline}.results.jsonl"
    results.unlink(missing_ok=True)
    asyncio.run(run_batch(BatchOptions(Path(pipeline), data(project, n), config=project / "config.yml",
                                       results=results, use_cache=False, **options), executor=executor, hooks=hooks))
    return sorted((json.loads(line) for line in results.read_text().splitlines()), key=lambda r: r["row"])


def requests_for(server: FakeLLMServer, text: str) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/chat/completions") and text in r.last_user_text)


def test_results_equal_the_local_executors(cluster: Any, project: Path, fake_server: FakeLLMServer) -> None:
    config(project, fake_server)
    write(project / "two.yml", TWO_STEPS)
    on_ray = batch(project, "two.yml", 6, RayExecutor())
    here = batch(project, "two.yml", 6, LocalExecutor(2))
    assert [r["status"] for r in on_ray] == ["completed"] * 6, on_ray[0].get("error")
    assert [r["outputs"] for r in on_ray] == [r["outputs"] for r in here]
    assert "question-004" in json.dumps(on_ray[3]["outputs"])
    assert all(Path(r["log"]).is_file() for r in on_ray)  # each row's memory log, written by its worker
    assert len({r["worker"] for r in on_ray}) == 2  # both workers ran rows


EVAL = """
    pipeline: ../one.yml
    data: rows.jsonl
    assert:
      - {type: contains, value: "{{ request }}"}
      - {type: icontains, value: "QUESTION-001"}
    variants:
      - {name: mini}
      - {name: loud, prompts: {translator: {text: "Translate it, loudly."}}, model_config: {model: gpt-4o}}
    """


def eval_project(project: Path, server: FakeLLMServer, rows: int) -> Path:
    config(project, server)
    write(project / "one.yml", ONE_STEP)
    lines = "".join(json.dumps({"request": f"question-{i:03d}"}) + "\n" for i in range(1, rows + 1))
    write(project / "evals" / "rows.jsonl", lines)
    return write(project / "evals" / "check.yml", EVAL)


def test_an_eval_on_ray_gives_the_local_results(cluster: Any, project: Path, fake_server: FakeLLMServer) -> None:
    """Every test x variant as a Ray task: the same cells, outcomes and assertion verdicts as in this process."""
    from orchestrai.evals.plan import load_eval
    from orchestrai.evals.runner import EvalOptions, EvalReport, run_eval
    from orchestrai.project import Project

    eval_file = eval_project(project, fake_server, 4)

    def run(executor: Any) -> EvalReport:
        plan, problems = load_eval(eval_file, Project.open(project / "config.yml"))
        assert plan is not None, problems
        try:
            return asyncio.run(run_eval(plan, EvalOptions(use_cache=False, executor=executor)))
        finally:
            plan.close()

    def verdicts(report: EvalReport) -> dict[Any, Any]:
        return {key: [(r.passed, r.output, r.error, [(a.type, a.passed, a.message) for a in r.assertions])
                      for r in cell.runs] for key, cell in report.cells.items()}

    on_ray, here = run(RayExecutor()), run(LocalExecutor(2))
    assert verdicts(on_ray) == verdicts(here)
    assert [(v.name, v.passed, v.total) for v in on_ray.variants] == [("mini", 1, 4), ("loud", 1, 4)]
    runs = [run for cell in on_ray.cells.values() for run in cell.runs]
    assert len(runs) == 8 and len({run.worker for run in runs}) == 2  # both workers ran tests
    assert all(run.log_path and Path(run.log_path).is_file() for run in runs)  # written by the workers
    sent = {((r.system or "").strip(), r.model) for r in fake_server.requests}
    assert ("Translate it, loudly.", "gpt-4o") in sent  # the variant's prompt overlay reached the workers


def test_the_eval_cli_runs_on_its_own_ray(project: Path, fake_server: FakeLLMServer) -> None:
    eval_file = eval_project(project, fake_server, 2)
    done = subprocess.run([sys.executable, "-m", "orchestrai", "eval", str(eval_file), "--executor", "ray",
                           "--json", "--no-cache"], cwd=project, capture_output=True, text=True, timeout=180)
    assert done.returncode == 1, done.stderr[-2000:]  # question-002 misses "QUESTION-001": both variants 50%
    data = json.loads(done.stdout)
    runs = [run for result in data["results"] for run in result["runs"]]
    assert len(runs) == 4 and all(run["worker"] for run in runs)
    assert sorted(run["passed"] for run in runs) == [False, False, True, True]


def test_max_concurrent_holds_at_the_server_across_workers(cluster: Any, project: Path,
                                                           fake_server: FakeLLMServer) -> None:
    config(project, fake_server, "rate_limits:\n  openai: {max_concurrent: 1}\n")
    write(project / "one.yml", ONE_STEP)
    fake_server.latency_s = 0.15
    results = batch(project, "one.yml", 8, RayExecutor())
    assert [r["status"] for r in results] == ["completed"] * 8
    assert len({r["worker"] for r in results}) == 2  # two processes, one limit
    assert fake_server.max_in_flight == 1


def test_requests_per_window_hold_at_the_server_across_workers(cluster: Any, project: Path,
                                                               fake_server: FakeLLMServer) -> None:
    """4 requests per window; the window is shortened to 2.5 s (+0.5 s margin) so the test takes seconds."""
    config(project, fake_server, "rate_limits:\n  openai: {requests_per_minute: 4}\n")
    write(project / "one.yml", ONE_STEP)
    results = batch(project, "one.yml", 10, RayExecutor(window_s=3.0))
    assert [r["status"] for r in results] == ["completed"] * 10
    assert len({r["worker"] for r in results}) == 2
    times = sorted(r.received_at for r in fake_server.requests if r.path.endswith("/chat/completions"))
    assert len(times) == 10
    worst = max(sum(1 for t in times if start <= t < start + 2.5) for start in times)
    assert worst <= 4, f"{worst} requests reached the server within one window"
    assert times[4] - times[0] >= 2.5  # the fifth waited for the first to leave the window


def test_the_budget_is_one_for_all_workers(cluster: Any, project: Path, fake_server: FakeLLMServer) -> None:
    """Each row costs ~$0.02 but reserves ~$0.1: one $0.35 budget stops the batch; one per worker would not."""
    config(project, fake_server, "pricing: {gpt-4o-mini: {input: 1000.0, output: 1000.0}}\n")
    write(project / "one.yml", ONE_STEP.replace("output_name: translated}",
                                                "output_name: translated, model_config: {max_tokens: 60}}"))
    results = batch(project, "one.yml", 20, RayExecutor(), budget_usd=0.35)
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
            if " ".join(process.cmdline()).startswith("ray::run_row_task"):
                found.append(process)
        except psutil.Error:
            continue
    return found


class KillAWorker:
    """A batch hook: after the second finished row, SIGKILL a worker that is running a row (or all of them)."""

    def __init__(self, *, every: bool = False) -> None:
        self.finished_before: list[int] = []
        self.killed: list[int] = []
        self.every = every

    def batch_started(self, tally: Any, batch_id: str) -> None: ...

    def batch_finished(self, summary: Any) -> None: ...

    def row_finished(self, result: Any, tally: Any) -> None:
        self.finished_before.append(result["row"]) if not self.killed else None
        if len(self.finished_before) == 2 and not self.killed:
            for _ in range(500):  # between two rows a worker is briefly idle
                workers = _row_workers()
                if workers and (not self.every or len(workers) > 1):
                    for worker in workers if self.every else workers[:1]:
                        self.killed.append(worker.pid)
                        os.kill(worker.pid, signal.SIGKILL)
                    return
                time.sleep(0.005)


def test_a_worker_killed_mid_batch_loses_no_row_and_reruns_no_finished_row(
        cluster: Any, project: Path, fake_server: FakeLLMServer) -> None:
    config(project, fake_server)
    write(project / "one.yml", ONE_STEP)
    fake_server.latency_s = 0.4
    hook = KillAWorker()
    results = batch(project, "one.yml", 10, RayExecutor(), hooks=[hook])
    assert hook.killed, "no worker was running a row"
    assert [r["row"] for r in results] == list(range(1, 11))  # every row, exactly once
    assert [r["status"] for r in results] == ["completed"] * 10
    for row in hook.finished_before:  # a finished row never ran again
        assert requests_for(fake_server, f"question-{row:03d}") == 1
    # The killed row ran again elsewhere (its request may or may not have reached the server first).
    assert not any(r["worker"].endswith(f":{hook.killed[0]}") for r in results if r["row"] not in
                   hook.finished_before and requests_for(fake_server, f"question-{r['row']:03d}") > 1)


def test_a_slot_held_by_a_killed_worker_is_taken_back(cluster: Any, project: Path,
                                                        fake_server: FakeLLMServer) -> None:
    """max_concurrent 1: killing both workers, one of them holding the one slot, must not stall the batch."""
    config(project, fake_server, "rate_limits:\n  openai: {max_concurrent: 1}\n")
    write(project / "one.yml", ONE_STEP)
    fake_server.latency_s = 0.5
    hook = KillAWorker(every=True)

    async def bounded() -> None:  # a leaked slot would wait forever: fail instead
        options = BatchOptions(Path("one.yml"), data(project, 6), config=project / "config.yml",
                               results=project / "out.jsonl", use_cache=False)
        await asyncio.wait_for(run_batch(options, executor=RayExecutor(), hooks=[hook]), timeout=120)

    asyncio.run(bounded())
    results = [json.loads(line) for line in (project / "out.jsonl").read_text().splitlines()]
    assert len(hook.killed) == 2
    assert sorted(r["row"] for r in results) == list(range(1, 7))
    assert all(r["status"] == "completed" for r in results)
    assert fake_server.max_in_flight == 1


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_no_socket_of_the_run_listens_beyond_loopback(cluster: Any, project: Path,
                                                      fake_server: FakeLLMServer) -> None:
    import psutil

    config(project, fake_server)
    write(project / "one.yml", ONE_STEP)
    batch(project, "one.yml", 4, RayExecutor())
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
    with pytest.raises(RayUnavailable, match="not installed"):
        require_ray()  # what `batch --executor ray` checks before it opens anything


def _listening_beyond_loopback(root: Any) -> list[tuple[str, int, str]]:
    import psutil

    ours = {root.pid, *(p.pid for p in root.children(recursive=True))}
    return [(c.laddr.ip, c.laddr.port, str(c.pid)) for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in ours and not _is_loopback(c.laddr.ip)]


def test_the_cli_starts_its_own_ray_on_loopback_only(project: Path, fake_server: FakeLLMServer) -> None:
    """`orchestrai batch --executor ray` in a process of its own: its Ray instance's sockets, watched while it runs."""
    import psutil

    config(project, fake_server)
    write(project / "one.yml", ONE_STEP)
    data(project, 6)
    fake_server.latency_s = 0.3
    process = subprocess.Popen([sys.executable, "-m", "orchestrai", "batch", "one.yml", "--data", "rows.jsonl",
                                "--executor", "ray", "-o", "out.jsonl", "--quiet"], cwd=project,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, seen, looked = psutil.Process(process.pid), [], 0
    while process.poll() is None:
        try:
            seen += _listening_beyond_loopback(root)
            looked += 1
        except psutil.Error:
            pass
        time.sleep(0.2)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    assert looked > 0 and seen == []
    results = [json.loads(line) for line in (project / "out.jsonl").read_text().splitlines()]
    assert sorted(r["row"] for r in results) == list(range(1, 7)) and all(r.get("worker") for r in results)


def test_the_cli_names_a_dead_ray_address(project: Path, fake_server: FakeLLMServer) -> None:
    config(project, fake_server)
    write(project / "one.yml", ONE_STEP)
    data(project, 2)
    address = f"127.0.0.1:{_free_port()}"
    done = subprocess.run([sys.executable, "-m", "orchestrai", "batch", "one.yml", "--data", "rows.jsonl",
                           "--executor", "ray", "--ray-address", address], cwd=project, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert f"Ray cluster at {address} is unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def _started_under(temp: Path) -> list[Any]:
    """Processes with `temp` in their command line or an open file under it (Ray's agents retitle themselves)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if str(temp) in " ".join(process.info["cmdline"] or []) or any(
                    f.path.startswith(str(temp)) for f in process.open_files()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_batch_on_an_existing_cluster_given_by_address(project: Path, fake_server: FakeLLMServer) -> None:
    """`ray start --head` on loopback (as a person would start a cluster), then `--ray-address` from the CLI."""
    import psutil

    config(project, fake_server)
    write(project / "one.yml", ONE_STEP)
    data(project, 4)
    # Short (Unix socket paths under it must fit 107 bytes), and in every command line of the head's
    # processes: how the test finds the ones it started.
    temp = Path(tempfile.mkdtemp(prefix="oray", dir="/tmp"))
    port = _free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", "2", "--include-dashboard", "false", "--temp-dir", str(temp)],
                   env=env, check=True, capture_output=True, timeout=120)
    try:
        done = subprocess.run([sys.executable, "-m", "orchestrai", "batch", "one.yml", "--data", "rows.jsonl",
                               "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "-o", "out.jsonl"],
                              cwd=project, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        results = [json.loads(line) for line in (project / "out.jsonl").read_text().splitlines()]
        assert sorted(r["row"] for r in results) == [1, 2, 3, 4]
        assert all(r["status"] == "completed" for r in results)
        head = _started_under(temp)
        assert head
        outside = [(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
                   if c.status == psutil.CONN_LISTEN and c.pid in {p.pid for p in head}
                   and not _is_loopback(c.laddr.ip)]
        assert outside == []
    finally:
        for _ in range(3):  # only the head this test started; its agents may outlive the raylet a moment
            for process in _started_under(temp):
                with contextlib.suppress(psutil.Error):
                    process.kill()
            time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)
