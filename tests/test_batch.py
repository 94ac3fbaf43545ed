"""`orchestrai batch` and `orchestrai.batch.run_batch`, against the loopback fake server."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import run_library

from orchestrai.batch import BatchOptions, LocalExecutor, RowRunner, read_results, run_batch, run_row_sync
from orchestrai.observe.runs import find_run

CHAIN = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: task_planner, inputs: [request], output_name: plan}
      - {module: enhancer, inputs: [request, plan], output_name: better}
    """
ONE = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: translator, inputs: [request], output_name: translation}
    """


def chats(server: FakeLLMServer) -> list[Any]:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def batch(**options: Any) -> Any:
    return asyncio.run(run_batch(BatchOptions(**options)))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def cli(project: Path, *args: str, keys: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrai", "batch", *args], cwd=project,
                          env={**os.environ, **(keys or {})}, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)


def test_results_equal_single_runs(project: Path, server_config: Path, keys: dict, fake_server: FakeLLMServer) -> None:
    write(project / "chain.yml", CHAIN)
    data = jsonl(project / "rows.jsonl", [{"question": f"question {n}", "extra": n} for n in range(5)])
    summary = batch(pipeline=Path("chain.yml"), data=data, mapping={"request": "question"},
                    results=project / "out.jsonl", concurrency=3, use_cache=False)
    assert (summary.status, summary.rows, summary.completed, summary.failed) == ("completed", 5, 5, 0)
    assert len(chats(fake_server)) == 10
    by_row = {entry["row"]: entry for entry in lines(project / "out.jsonl")}
    assert sorted(by_row) == [1, 2, 3, 4, 5]
    for number, entry in by_row.items():
        single, _ = run_library("chain.yml", inputs={"request": f"question {number - 1}", "extra": number - 1},
                                use_cache=False)
        assert entry["outputs"] == {"better": single.outputs["better"]}, number
        assert entry["status"] == "completed" and entry["line"] == number and entry["batch"] == summary.batch_id
        assert entry["totals"]["input_tokens"] == single.totals.input_tokens > 0
        log = json.loads(Path(entry["log"]).read_text())  # each row's memory log, under the batch folder
        assert Path(entry["log"]).parent == project / "logs" / f"batch-{summary.batch_id}"
        assert log["run_id"] == entry["run_id"] and log["status"] == "completed"
    saved = json.loads((project / "logs" / f"batch-{summary.batch_id}" / "summary.json").read_text())
    assert saved["completed"] == 5
    assert saved["input_tokens"] == sum(e["totals"]["input_tokens"] for e in by_row.values())


def test_rows_at_once_are_bounded_by_concurrency(project: Path, server_config: Path, keys: dict,
                                                 fake_server: FakeLLMServer) -> None:
    write(project / "one.yml", ONE)
    data = jsonl(project / "rows.jsonl", [{"request": f"r{n}"} for n in range(9)])
    fake_server.latency_s = 0.1
    summary = batch(pipeline=Path("one.yml"), data=data, concurrency=3, use_cache=False)
    assert summary.completed == 9 and len(chats(fake_server)) == 9
    assert 2 <= fake_server.max_in_flight <= 3  # rows overlap, and never more than three at once


def test_a_rate_limit_holds_across_rows(project: Path, server_config: Path, keys: dict,
                                        fake_server: FakeLLMServer) -> None:
    write(project / "config.yml", server_config.read_text() + "rate_limits:\n  openai: {max_concurrent: 1}\n")
    write(project / "one.yml", ONE)
    data = jsonl(project / "rows.jsonl", [{"request": f"r{n}"} for n in range(6)])
    fake_server.latency_s = 0.05
    summary = batch(pipeline=Path("one.yml"), data=data, concurrency=6, use_cache=False)
    assert summary.completed == 6 and len(chats(fake_server)) == 6
    assert fake_server.max_in_flight == 1, "one limiter for all rows: never two requests at once"


def test_rows_share_the_call_cache(project: Path, server_config: Path, keys: dict, fake_server: FakeLLMServer) -> None:
    write(project / "one.yml", ONE)
    data = jsonl(project / "rows.jsonl", [{"request": "same"}] * 4)
    summary = batch(pipeline=Path("one.yml"), data=data, concurrency=1)
    assert summary.completed == 4 and len(chats(fake_server)) == 1


def test_bad_rows_fail_alone_with_their_line(project: Path, server_config: Path, keys: dict,
                                             fake_server: FakeLLMServer) -> None:
    write(project / "one.yml", ONE)
    (project / "rows.jsonl").write_text('{"q": "a"}\n{"q": \n\n[1, 2]\n{"other": 1}\n{"q": "b"}\n', encoding="utf-8")
    summary = batch(pipeline=Path("one.yml"), data=project / "rows.jsonl", mapping={"request": "q"}, use_cache=False)
    assert (summary.rows, summary.completed, summary.failed) == (5, 2, 3)
    errors = {e["row"]: e["error"] for e in lines(project / "rows.results.jsonl") if e["status"] == "failed"}
    assert errors[2].startswith(f"{project / 'rows.jsonl'}:2: not valid JSON")
    assert errors[3].endswith("rows.jsonl:4: a row must be a JSON object, not list")
    assert "rows.jsonl:5: row 4 has no column 'q' (--map request=q); its columns: other" in errors[4]
    assert len(chats(fake_server)) == 2
    (project / "rows.csv").write_text('request,n\nhello,1\nbroken\n"open quote,2\n', encoding="utf-8")
    summary = batch(pipeline=Path("one.yml"), data=project / "rows.csv", use_cache=False)
    errors = {e["row"]: e["error"] for e in lines(project / "rows.results.jsonl") if e["status"] == "failed"}
    assert summary.completed == 1 and "rows.csv:3: 1 values for 2 columns (request, n)" in errors[2]
    assert "rows.csv:4: malformed CSV" in errors[3]


def test_exit_codes_and_messages(project: Path, server_config: Path, keys: dict, fake_server: FakeLLMServer) -> None:
    write(project / "one.yml", ONE)
    jsonl(project / "rows.jsonl", [{"request": "a"}, {"other": "b"}])
    failed = cli(project, "one.yml", "--data", "rows.jsonl", "-o", "out.jsonl", keys=keys)
    assert failed.returncode == 1, failed.stderr
    assert "row 2 failed: rows.jsonl:2: row 2 has no column 'request', a run input of the pipeline" in failed.stderr
    assert "batch " in failed.stderr and "1 completed, 1 failed of 2 rows" in failed.stderr
    allowed = cli(project, "one.yml", "--data", "rows.jsonl", "--allow-failures", "-q", keys=keys)
    assert allowed.returncode == 0 and allowed.stderr.count("\n") == 1  # quiet: only the failed row's line
    for args, expected in [(["--data", "missing.jsonl"], "--data missing.jsonl: no such file"),
                           (["--data", "one.yml"], "unknown format '.yml'"),
                           (["--data", "rows.jsonl", "--map", "oops"], "--map 'oops': expected INPUT=COLUMN")]:
        done = cli(project, "one.yml", *args, keys=keys)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    write(project / "broken.yml", "pipeline:\n  - {module: nowhere, inputs: [], output_name: x}\n")
    done = cli(project, "broken.yml", "--data", "rows.jsonl", keys=keys)
    assert done.returncode == 2 and "broken.yml:2" in done.stderr and "Traceback" not in done.stderr


def test_a_mistake_every_row_would_hit_stops_the_batch(project: Path, server_config: Path,
                                                       fake_server: FakeLLMServer) -> None:
    write(project / "one.yml", ONE)
    jsonl(project / "rows.jsonl", [{"request": f"r{n}"} for n in range(20)])
    done = cli(project, "one.yml", "--data", "rows.jsonl", "--concurrency", "1")  # no key in the environment
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "error:" in done.stderr and "TEST_OPENAI_KEY" in done.stderr
    assert len(lines(project / "rows.results.jsonl")) == 1 and not chats(fake_server)


def test_resume_after_sigkill_runs_only_the_missing_rows(project: Path, server_config: Path, keys: dict,
                                                         fake_server: FakeLLMServer) -> None:
    write(project / "one.yml", ONE)
    jsonl(project / "rows.jsonl", [{"request": f"row-{n}"} for n in range(1, 7)])
    for n in (4, 5, 6):
        fake_server.queue_reply("too slow", match=f"row-{n}", latency_s=30)
    command = [sys.executable, "-m", "orchestrai", "batch", "one.yml", "--data", "rows.jsonl", "-o", "out.jsonl",
               "--concurrency", "2", "--no-cache"]
    process = subprocess.Popen(command, cwd=project, env={**os.environ, **keys}, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = project / "out.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") >= 3
                                               and len(chats(fake_server)) >= 5):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    finished = lines(results)
    assert sorted(e["row"] for e in finished) == [1, 2, 3]
    with results.open("a") as handle:  # what a kill in the middle of a write leaves
        handle.write('{"batch": "x", "row": 4, "stat')
    fake_server.reset()
    done = subprocess.run([*command, "--resume"], cwd=project, env={**os.environ, **keys}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sent = sorted(r.messages[-1]["content"].rsplit("\n", 1)[-1] for r in chats(fake_server))
    assert sent == ["row-4", "row-5", "row-6"], "finished rows must not reach the server again"
    entries = lines(results)  # every line parses: the partial one was cut off
    assert sorted(e["row"] for e in entries) == [1, 2, 3, 4, 5, 6]
    assert {e["batch"] for e in entries} == {finished[0]["batch"]}  # the same batch, the same folder
    assert "3 completed, 0 failed, 3 from an earlier run of 6 rows" in done.stderr


def test_resume_runs_failed_rows_again(project: Path, server_config: Path, keys: dict,
                                       fake_server: FakeLLMServer) -> None:
    write(project / "one.yml", ONE)
    data = jsonl(project / "rows.jsonl", [{"request": "good"}, {"request": "BREAK"}])
    fake_server.set_error_rule(lambda i, r: (400, "content rejected", {}) if "BREAK" in json.dumps(r.body) else None)
    first = batch(pipeline=Path("one.yml"), data=data, use_cache=False)
    assert (first.completed, first.failed) == (1, 1)
    assert "step translation failed" in first.failed_rows[0]["error"]
    fake_server.reset()
    second = batch(pipeline=Path("one.yml"), data=data, use_cache=False, resume=True)
    assert (second.completed, second.failed, second.resumed) == (1, 0, 1) and len(chats(fake_server)) == 1
    [ok] = [e for e in lines(project / "rows.results.jsonl") if e["row"] == 2 and e["status"] == "completed"]
    assert ok["outputs"]["translation"].startswith("reply to gpt-4o-mini")


def test_the_local_executor_reports_a_crashing_runner_as_a_failed_row() -> None:
    async def run_row(number: int, inputs: dict[str, Any]) -> Any:
        if number == 2:
            raise RuntimeError("boom")
        await asyncio.sleep(0)
        return {"row": number, "status": "completed"}

    async def collect() -> list[Any]:
        return [r async for r in LocalExecutor(2).run_rows([(n, {}) for n in range(1, 5)], run_row)]

    results = sorted(asyncio.run(collect()), key=lambda r: r["row"])
    assert [r["status"] for r in results] == ["completed", "failed", "completed", "completed"]
    assert results[1]["error"] == "internal error: RuntimeError: boom"


def test_a_row_runner_pickles_and_runs_on_its_own(project: Path, server_config: Path, keys: dict,
                                                  fake_server: FakeLLMServer) -> None:
    """What another executor (Ray) does: ship the runner to a process, which opens its own project and Shared."""
    write(project / "one.yml", ONE)
    runner = pickle.loads(pickle.dumps(RowRunner(Path("one.yml"), log_dir=project / "rowlogs", use_cache=False)))
    result = run_row_sync(runner, 7, {"request": "alone"})
    assert result["status"] == "completed" and result["run_id"] == "batch-7"
    assert result["outputs"]["translation"] == "reply to gpt-4o-mini: ## request\nalone"
    assert Path(str(result["log"])).parent == project / "rowlogs" and len(chats(fake_server)) == 1


def test_read_results_ignores_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"row": 1, "status": "completed"}\n{"row": 2, "sta')
    results, end = read_results(path)
    assert [r["row"] for r in results] == [1] and end == len(b'{"row": 1, "status": "completed"}\n')


@pytest.mark.parametrize("concurrency", [1, 4])
def test_dry_run_batch_on_echo(project: Path, concurrency: int) -> None:
    write(project / "one.yml", ONE)
    data = jsonl(project / "rows.jsonl", [{"request": f"r{n}"} for n in range(12)])
    summary = batch(pipeline=Path("one.yml"), data=data, dry_run=True, concurrency=concurrency)
    assert summary.completed == 12
    assert gc.get_freeze_count() == 0, "overlapping rows share one heap freeze, undone when the last row ends"
    entries = {e["row"]: e for e in lines(project / "rows.results.jsonl")}
    assert {n: e["outputs"]["translation"] for n, e in entries.items()} == {
        n: f"[echo gpt-4o-mini] ## request\nr{n - 1}" for n in range(1, 13)}
    path, log = find_run(project / "logs" / f"batch-{summary.batch_id}", f"{summary.batch_id}-1")
    assert path == Path(entries[1]["log"]) and log["dry_run"]  # row 1's whole id wins over rows 10-12's prefix


def test_one_budget_for_all_rows(project: Path, server_config: Path, keys: dict, fake_server: FakeLLMServer) -> None:
    text = server_config.read_text().replace("  model: gpt-4o-mini\n", "  model: pricey-model\n  max_tokens: 10\n")
    write(project / "config.yml", text + "pricing:\n  pricey-model: {input: 0.0, output: 1000.0}\n")
    write(project / "one.yml", ONE)
    jsonl(project / "rows.jsonl", [{"request": f"r{n}"} for n in range(5)])
    for _ in range(5):
        fake_server.queue_reply("ten tokens", usage=(50, 10))
    done = cli(project, "one.yml", "--data", "rows.jsonl", "--budget", "0.035", "--concurrency", "1", "--no-cache",
               keys=keys)
    assert done.returncode == 3, done.stderr
    assert len(chats(fake_server)) == 3, "the budget is the batch's: no 4th request may reach the server"
    statuses = {e["row"]: e["status"] for e in lines(project / "rows.results.jsonl")}
    assert statuses == {1: "completed", 2: "completed", 3: "completed", 4: "budget_exceeded", 5: "budget_exceeded"}
    assert "budget exceeded" in done.stderr


def test_progress_views_over_rows(project: Path) -> None:
    import io

    from rich.console import Console

    from orchestrai.cli.batchcmd import LiveBatchProgress, PlainBatchProgress

    write(project / "one.yml", ONE)
    rows = [{"request": f"r{n}"} for n in range(40)] + [{"other": 1}]
    data = jsonl(project / "rows.jsonl", rows)
    plain_out, live_out = io.StringIO(), io.StringIO()
    hooks = [PlainBatchProgress(Console(file=plain_out, width=200)),
             LiveBatchProgress(Console(file=live_out, width=200, force_terminal=True))]
    summary = asyncio.run(run_batch(BatchOptions(Path("one.yml"), data, dry_run=True), hooks=hooks))
    plain = plain_out.getvalue().splitlines()
    assert plain[0] == f"batch {summary.batch_id}: 41 rows"
    progress = [line for line in plain if " rows" in line and "ETA" in line]
    assert 19 <= len(progress) <= 22, "a line at each twentieth, not one per row"
    assert progress[-1].startswith("41/41 rows · 1 failed · ")
    assert sum("row 41 failed: " in line and "rows.jsonl:41:" in line for line in plain) == 1
    assert plain[-1].startswith(f"batch {summary.batch_id} completed: 40 completed, 1 failed of 41 rows")
    assert "row 41 failed" in live_out.getvalue() and "40 completed, 1 failed of 41 rows" in live_out.getvalue()


def test_ctrl_c_keeps_finished_rows_and_writes_the_summary(project: Path, server_config: Path, keys: dict,
                                                           fake_server: FakeLLMServer) -> None:
    write(project / "one.yml", ONE)
    jsonl(project / "rows.jsonl", [{"request": f"r{n}"} for n in range(30)])
    fake_server.latency_s = 0.3
    process = subprocess.Popen([sys.executable, "-m", "orchestrai", "batch", "one.yml", "--data", "rows.jsonl",
                                "--concurrency", "2", "--no-cache"], cwd=project, env={**os.environ, **keys},
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = project / "rows.results.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "run again with --resume" in stderr
    entries = lines(results)
    assert 2 <= len(entries) < 30 and all(e["status"] == "completed" for e in entries)
    [summary] = (project / "logs").glob("batch-*/summary.json")
    saved = json.loads(summary.read_text())
    assert saved["status"] == "interrupted" and saved["completed"] == len(entries)
