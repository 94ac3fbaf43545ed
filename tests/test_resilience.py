"""Faults and money, against the loopback fake server: retries, fallbacks, rate limits, budgets,
partial runs, resume and the call cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import kill_then_resume, run_library

from orchestrai.project import Project

CHAIN = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: task_planner, inputs: [request], output_name: plan}
      - {module: scrutinizer, inputs: [request, plan], output_name: review}
      - {module: enhancer, inputs: [request, review], output_name: better}
      - {module: markdown_converter, inputs: [better], output_name: markdown}
    """


def chat_requests(server: FakeLLMServer) -> list:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def every_nth(n: int, status: int, headers: dict | None = None):
    return lambda index, request: (status, "injected fault", headers or {}) if (index + 1) % n == 0 else None


@pytest.mark.parametrize("status,headers", [(429, {"Retry-After": "0"}), (500, {})])
def test_every_third_request_failing_still_completes(project: Path, server_config: Path, keys: dict,
                                                     fake_server: FakeLLMServer, status: int, headers: dict) -> None:
    write(project / "chain.yml", CHAIN)
    fake_server.set_error_rule(every_nth(3, status, headers))
    result, memory_log = run_library("chain.yml", inputs={"request": "R"})
    assert result.status == "completed"
    log = json.loads(memory_log.path.read_text())
    retried = [s for s in log["steps"] if len(s["attempts"]) > 1]
    assert retried, "some step must have needed a retry"
    for step in retried:
        assert step["attempts"][0]["kind"] == ("rate_limit" if status == 429 else "server")
        assert "latency_s" in step["attempts"][-1]
    assert all(s["output"].startswith("reply to gpt-4o-mini") for s in log["steps"][1:])


def test_permanent_401_fails_fast_without_retries(project: Path, server_config: Path, keys: dict,
                                                  fake_server: FakeLLMServer) -> None:
    write(project / "chain.yml", CHAIN)
    fake_server.set_error_rule(lambda index, request: (401, "invalid key", {}))
    result, _ = run_library("chain.yml", inputs={"request": "R"})
    assert result.status == "failed"
    assert len(chat_requests(fake_server)) == 1


def test_fallback_model_after_retries_are_exhausted(project: Path, server_config: Path, keys: dict,
                                                    fake_server: FakeLLMServer) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - module: translator
            inputs: [request]
            output_name: t
            retry: {max_attempts: 2}
            fallback_models: [gpt-4.1-mini]
        """)
    fake_server.set_error_rule(lambda i, r: (503, "overloaded", {}) if r.model == "gpt-4o-mini" else None)
    result, memory_log = run_library("p.yml", inputs={"request": "R"})
    assert result.status == "completed"
    step = json.loads(memory_log.path.read_text())["steps"][1]
    assert [a["model"] for a in step["attempts"]] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4.1-mini"]
    assert step["model"] == "gpt-4.1-mini" and step["output"].startswith("reply to gpt-4.1-mini")


def test_step_timeout_is_retried_then_fails(project: Path, server_config: Path, keys: dict,
                                            fake_server: FakeLLMServer) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: t, timeout_s: 0.2, retry: {max_attempts: 2}}
        """)
    fake_server.latency_s = 1.0
    result, _ = run_library("p.yml", inputs={"request": "R"})
    step = result.records[1]
    assert step.status == "failed" and "timeout_s=0.2" in step.error and len(step.attempts) == 2


@pytest.mark.slow
def test_requests_per_minute_holds_in_every_window(project: Path, server_config: Path, keys: dict,
                                                   fake_server: FakeLLMServer) -> None:
    """30 quick independent steps at 20 requests/minute: 20 go at once, the other 10 a minute later."""
    config = server_config.read_text() + "rate_limits:\n  openai: {requests_per_minute: 20}\n"
    write(project / "config.yml", config)
    steps = "\n".join(f"  - {{module: translator, inputs: [request], output_name: t{i}}}" for i in range(30))
    write(project / "wide.yml", "pipeline:\n  - {module: start_module, output_name: request}\n" + steps + "\n")
    result, _ = run_library("wide.yml", inputs={"request": "R"}, max_concurrency=50)
    assert result.status == "completed"
    times = sorted(r.received_at for r in chat_requests(fake_server))
    assert len(times) == 30
    worst = max(sum(1 for t in times if start <= t < start + 60.0) for start in times)
    assert worst <= 20, f"{worst} requests reached the server within 60 s"
    assert times[20] - times[0] >= 60.0


def test_higher_priority_goes_first_when_the_limit_is_the_bottleneck(project: Path, server_config: Path, keys: dict,
                                                                       fake_server: FakeLLMServer) -> None:
    write(project / "config.yml", server_config.read_text() + "rate_limits:\n  openai: {max_concurrent: 1}\n")
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: low, supplement: LOW}
          - {module: translator, inputs: [request], output_name: mid, supplement: MID, priority: 5}
          - {module: translator, inputs: [request], output_name: high, supplement: HIGH, priority: 10}
          - {module: translator, inputs: [request], output_name: low2, supplement: LOW2}
        """)
    fake_server.latency_s = 0.05
    run_library("p.yml", inputs={"request": "R"})
    order = [r.messages[-1]["content"].rsplit("\n", 1)[-1] for r in chat_requests(fake_server)]
    # The first call is admitted before the others are queued; after it, strictly by priority then file order.
    assert order[1:] == sorted(order[1:], key=["HIGH", "MID", "LOW", "LOW2"].index)
    assert order.index("HIGH") < order.index("LOW2")


def test_budget_allows_three_calls_then_stops(project: Path, server_config: Path, keys: dict,
                                              fake_server: FakeLLMServer) -> None:
    text = server_config.read_text().replace("  model: gpt-4o-mini\n", "  model: pricey-model\n  max_tokens: 10\n")
    write(project / "config.yml", text + "pricing:\n  pricey-model: {input: 0.0, output: 1000.0}\nbudget_usd: 0.035\n")
    write(project / "chain.yml",
          CHAIN.rstrip(" ") + "      - {module: enhancer, inputs: [markdown], output_name: extra}\n")
    for _ in range(5):
        fake_server.queue_reply("ten tokens", usage=(50, 10))
    result, memory_log = run_library("chain.yml", inputs={"request": "R"})
    assert result.status == "budget_exceeded"
    assert len(chat_requests(fake_server)) == 3, "no 4th request may reach the server"
    assert result.message.startswith("budget exceeded: spent $0.0300 of $0.0350")
    assert result.message.endswith("not run: markdown, extra")
    log = json.loads(memory_log.path.read_text())
    assert log["status"] == "budget_exceeded" and log["totals"]["cost_usd"] == pytest.approx(0.03)
    assert [s["status"] for s in log["steps"]] == ["completed"] * 4 + ["skipped"] * 2


def test_unpriced_model_under_a_budget_is_a_validation_error(project: Path) -> None:
    write(project / "p.yml", """
        budget_usd: 1.0
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: t, model_config: {model: mystery-model}}
        """)
    graph, problems = Project.open(None).check("p.yml")
    assert graph is None
    assert "p.yml:4: step 't': model 'mystery-model' has no known price, but the run has a budget" in str(problems[0])


def test_bad_policy_values_are_validation_errors(project: Path) -> None:
    write(project / "config.yml", "rate_limits:\n  openai: {requests_per_minute: 0}\nretry: {max_attempts: 0}\n"
                                  "budget_usd: -1\n")
    with pytest.raises(Exception) as caught:
        Project.open(None)
    text = str(caught.value)
    assert "config.yml:2: rate_limits.openai.requests_per_minute: input should be greater than 0" in text
    assert "config.yml:3: retry.max_attempts: input should be greater than or equal to 1" in text
    assert "config.yml:4: budget_usd: input should be greater than 0" in text
    write(project / "config.yml", "")
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: t, timeout_s: 0, max_cost_usd: -2}
        """)
    _, problems = Project.open(None).check("p.yml")
    assert [p.line for p in problems] == [3, 3] and "timeout_s" in str(problems[0]) + str(problems[1])


def test_non_critical_failure_gives_partial_and_optional_inputs_run_without_it(
        project: Path, server_config: Path, keys: dict, fake_server: FakeLLMServer) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: flaky, supplement: BREAK, critical: false}
          - {module: translator, inputs: [request], output_name: solid, supplement: Spanish}
          - {module: enhancer, inputs: [request, flaky], output_name: needs_flaky}
          - {module: markdown_converter, inputs: [solid], optional_inputs: [flaky], output_name: joined}
        """)
    fake_server.set_error_rule(lambda i, r: (400, "content rejected", {}) if "BREAK" in json.dumps(r.body) else None)
    result, _ = run_library("p.yml", inputs={"request": "R"})
    status = {r.id: r.status for r in result.records}
    assert result.status == "partial"
    assert status == {"request": "completed", "flaky": "failed", "solid": "completed", "needs_flaky": "skipped",
                      "joined": "completed"}
    joined_request = chat_requests(fake_server)[-1]
    assert "## solid" in joined_request.messages[-1]["content"]
    assert "## flaky" not in joined_request.messages[-1]["content"]


def test_second_identical_run_sends_no_request(project: Path, server_config: Path, keys: dict,
                                               fake_server: FakeLLMServer) -> None:
    write(project / "chain.yml", CHAIN)
    first, _ = run_library("chain.yml", inputs={"request": "R"})
    sent = len(chat_requests(fake_server))
    second, memory_log = run_library("chain.yml", inputs={"request": "R"})
    assert sent == 4 and len(chat_requests(fake_server)) == 4, "the second run must not reach the server"
    assert second.outputs == first.outputs
    log = json.loads(memory_log.path.read_text())
    assert [s["status"] for s in log["steps"][1:]] == ["cached"] * 4
    assert log["totals"]["cost_usd"] == 0 and log["totals"]["cached_steps"] == 4
    run_library("chain.yml", inputs={"request": "R"}, use_cache=False)
    assert len(chat_requests(fake_server)) == 8


def test_step_cache_false_always_calls(project: Path, server_config: Path, keys: dict,
                                       fake_server: FakeLLMServer) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: t, cache: false}
        """)
    run_library("p.yml", inputs={"request": "R"})
    run_library("p.yml", inputs={"request": "R"})
    assert len(chat_requests(fake_server)) == 2


def test_corrupt_cache_is_reported_and_bypassed(project: Path, server_config: Path, keys: dict,
                                                fake_server: FakeLLMServer, tmp_path: Path) -> None:
    cache_file = tmp_path / "xdg-cache" / "orchestrai" / "calls.sqlite"
    cache_file.parent.mkdir(parents=True)
    cache_file.write_bytes(b"this is not a database" * 100)
    result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "R"})
    assert result.status == "completed"
    assert any("call cache" in notice and "bypassed" in notice for notice in result.notices)
    assert "bypassed" in json.loads(memory_log.path.read_text())["notices"][0]


def test_locked_cache_is_bypassed(project: Path, server_config: Path, keys: dict, fake_server: FakeLLMServer,
                                  tmp_path: Path) -> None:
    import sqlite3

    from orchestrai.engine.cache import CallCache

    cache = CallCache(tmp_path / "xdg-cache" / "orchestrai")
    cache.stats()  # creates the file
    locker = sqlite3.connect(cache.path, timeout=0)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        result, _ = run_library("pipelines/translation.yml", inputs={"request": "R"})
    finally:
        locker.rollback()
        locker.close()
    assert result.status == "completed" and len(chat_requests(fake_server)) == 2
    assert any("locked" in notice for notice in result.notices)


def test_resume_after_sigkill_repeats_no_finished_step(project: Path, server_config: Path, keys: dict,
                                                       fake_server: FakeLLMServer) -> None:
    write(project / "chain.yml", CHAIN)
    fake_server.queue_reply("slow review", match="demanding reviewer", latency_s=30)
    env = {**os.environ, **keys}
    command = [sys.executable, "-m", "orchestrai", "run", "chain.yml", "--input", "request=R", "--no-cache"]
    process = subprocess.Popen(command, cwd=project, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while len(chat_requests(fake_server)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    run_id, done = kill_then_resume(process, project, env, fake_server.reset)
    assert done.returncode == 0, done.stderr
    systems = [r.system or r.messages[0]["content"] for r in chat_requests(fake_server)]
    assert len(systems) == 3 and not any("senior planner" in s for s in systems), "task_planner must not run again"
    [log_path] = [p for p in (project / "logs").glob("*.json") if run_id not in p.name]
    log = json.loads(log_path.read_text())
    assert log["resumed_from"] == run_id
    assert [s["status"] for s in log["steps"]] == ["resumed", "resumed", "completed", "completed", "completed"]
    assert log["steps"][2]["details"]["rerun_because"] == "it was interrupted in the earlier run"


def test_resume_of_a_changed_pipeline_reruns_only_what_changed(project: Path, server_config: Path, keys: dict,
                                                              fake_server: FakeLLMServer) -> None:
    write(project / "chain.yml", CHAIN)
    first, memory_log = run_library("chain.yml", inputs={"request": "R"}, use_cache=False)
    from orchestrai.engine.resume import ResumeSource
    from orchestrai.observe.memory_log import read_log

    source = ResumeSource.from_log(memory_log.path, read_log(memory_log.path))
    write(project / "chain.yml",
          CHAIN.replace("output_name: review}", "output_name: review, model_config: {temperature: 0.9}}"))
    fake_server.reset()
    fake_server.queue_reply("a different review", match="demanding reviewer")
    second, _ = run_library("chain.yml", use_cache=False, resume=source)
    status = {r.id: r.status for r in second.records}
    assert status == {"request": "resumed", "plan": "resumed", "review": "completed", "better": "completed",
                      "markdown": "completed"}
    reasons = {r.id: r.details.get("rerun_because") for r in second.records}
    assert reasons["review"] == "its module, prompt, model settings or options changed"
    assert reasons["better"] == reasons["markdown"] == "its inputs changed"
    assert len(chat_requests(fake_server)) == 3


def test_a_wait_for_a_rate_limit_is_an_event_and_on_the_attempt(project: Path, server_config: Path, keys: dict,
                                                                 fake_server: FakeLLMServer) -> None:
    """Two calls, one at a time: the second waits for the first (0.2 s at the server), and says so."""
    from orchestrai.api import RateLimitWaited

    write(project / "config.yml", server_config.read_text() + "rate_limits:\n  openai: {max_concurrent: 1}\n")
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: a}
          - {module: translator, inputs: [request], output_name: b}
        """)
    fake_server.latency_s = 0.2
    seen: list[RateLimitWaited] = []

    class Waits:
        events = (RateLimitWaited,)

        def on_event(self, event: Any) -> None:
            seen.append(event)

    result, _ = run_library("p.yml", inputs={"request": "R"}, hooks=[Waits()])
    assert result.status == "completed"
    waited = {r.id: r.attempts[0].get("rate_limit_wait_s") for r in result.records if r.module == "translator"}
    assert sorted(waited.values(), key=lambda w: w or 0)[0] is None  # the first call was admitted at once
    late = next(step for step, wait in waited.items() if wait)
    assert waited[late] >= 0.1  # it waited for the other call (0.2 s at the server) to end
    assert [(e.step_id, e.provider, e.model, e.wait_s) for e in seen] == [(late, "openai", "gpt-4o-mini",
                                                                           waited[late])]
