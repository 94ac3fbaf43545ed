"""Signed webhooks: real receivers on 127.0.0.1 verify each delivery with the README's own code; retries,
failures, hangs and 410 are recorded in the memory log apart from the run's status; validation at path:line."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, write
from fake_llm_server import FakeLLMServer
from helpers import run_library

from orchestrai.api import RunFinished
from orchestrai.config import parse_config
from orchestrai.engine.resume import ResumeSource
from orchestrai.errors import ConfigError
from orchestrai.observe.memory_log import read_log

SECRET = "whsec_" + base64.b64encode(b"orchestrai-test-webhook-key-0123456789").decode()


def readme_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The receiver example of README.md's "Webhooks" section, executed as written."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Webhooks"):]
    section = section[: section.index("\n## ", 1)]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(code.strip().splitlines()) <= 10, "the README promises a 10-line receiver"
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented code is what we test
    verify: Callable[[str, dict[str, str], bytes], bool] = namespace["verify"]
    return verify


VERIFY = readme_verify()


class Receiver:
    """A webhook receiver on loopback: answers `statuses` in turn (then `default`), records every request
    and whether the README's verify() accepted its signature. `wait_for`: an event each request waits on
    (at most 20 s) before answering; `hang`: never answer until the test ends."""

    def __init__(self, statuses: list[int] | None = None, *, default: int = 200, hang: bool = False,
                 wait_for: threading.Event | None = None, headers: dict[str, str] | None = None) -> None:
        self.statuses, self.default, self.hang, self.wait_for = list(statuses or []), default, hang, wait_for
        self.headers = headers or {}
        self.requests: list[dict[str, Any]] = []
        self.released = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {key.lower(): value for key, value in self.headers.items()}
                waited = receiver.wait_for.wait(20) if receiver.wait_for is not None else None
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": headers, "body": body,
                                              "valid": VERIFY(SECRET, headers, body), "after_run": waited})
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                if receiver.hang:
                    receiver.released.wait(30)
                    return
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=query-secret-value"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.released.set()
        if self.wait_for is not None:
            self.wait_for.set()
        self.server.shutdown()
        self.server.server_close()

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(request["body"]) for request in self.requests]


class SetOnRunFinished:
    """A test hook: sets an event when the run's RunFinished is emitted (the steps are all done)."""

    events = frozenset({RunFinished})

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_event(self, event: object) -> None:
        self.event.set()


@pytest.fixture
def receiver_config(project: Path, fake_server: FakeLLMServer, keys: dict[str, str],
                    monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """config.yml with the fake LLM server as openai and one webhook (settings as YAML flow text)."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)

    def make(url: str, **settings: Any) -> Path:
        hook = {"url": url, "secret": "${WEBHOOK_SECRET}", "events": ["run_finished"], "timeout_s": 5,
                "deadline_s": 20, **settings}
        return write(project / "config.yml", f"""
            providers:
              openai:
                base_url: {fake_server.base_url}
                api_key: ${{TEST_OPENAI_KEY}}
                timeout_s: 5
            default_model_config: {{model: gpt-4o-mini}}
            log_dir: logs
            webhooks:
              - {json.dumps(hook)}
            """)

    return make


def webhooks_of(memory_log: Any) -> list[dict[str, Any]]:
    log = read_log(memory_log.path)
    records: list[dict[str, Any]] = log["webhooks"]
    return records


def test_retried_after_two_500s_delivered_on_the_third_same_id_recorded(receiver_config: Callable[..., Path]) -> None:
    with Receiver([500, 500, 200]) as receiver:
        receiver_config(receiver.url)
        result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    assert result.status == "completed"
    assert len(receiver.requests) == 3
    assert all(request["valid"] for request in receiver.requests), "the README's verify() accepts each attempt"
    assert len({request["headers"]["webhook-id"] for request in receiver.requests}) == 1
    first = receiver.requests[0]
    assert not VERIFY(SECRET, first["headers"], first["body"] + b" "), "a changed body fails verification"
    other = "whsec_" + base64.b64encode(b"another-key-of-enough-length-0123").decode()
    assert not VERIFY(other, first["headers"], first["body"]), "another secret fails verification"
    assert all(request["headers"]["webhook-signature"].startswith("v1,") for request in receiver.requests)
    payload = receiver.payloads()[-1]
    assert payload["type"] == "run_finished" and payload["data"]["run_id"] == result.run_id
    assert payload["data"]["status"] == "completed" and payload["data"]["steps"] == {"completed": 3}
    assert "outputs" not in payload["data"], "outputs only with include_outputs: true"
    [delivery] = webhooks_of(memory_log)
    assert delivery["delivered"] is True and delivery["last_error"] is None
    assert [attempt.get("status") for attempt in delivery["attempts"]] == [500, 500, 200]
    assert delivery["webhook_id"] == receiver.requests[0]["headers"]["webhook-id"]
    assert delivery["url"].endswith("/hook?…") and "query-secret-value" not in delivery["url"]
    log = read_log(memory_log.path)
    assert log["status"] == "completed"


def test_a_receiver_that_always_fails_neither_fails_nor_holds_up_the_steps(
        receiver_config: Callable[..., Path]) -> None:
    run_finished = threading.Event()
    # Each request waits until the run's steps are all done: had a delivery held a step up, the run
    # could not have finished while its deliveries waited (after_run would be False after 20 s).
    with Receiver(default=500, wait_for=run_finished) as receiver:
        receiver_config(receiver.url, events=["step_finished", "run_finished"], max_attempts=2)
        result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"},
                                         hooks=[SetOnRunFinished(run_finished)])
    assert result.status == "completed"
    log = read_log(memory_log.path)
    assert log["status"] == "completed"
    deliveries = log["webhooks"]
    assert sorted(d["event"] for d in deliveries) == ["run_finished"] + ["step_finished"] * 3
    assert all(not d["delivered"] and d["last_error"] == "HTTP 500" for d in deliveries)
    assert all([a["status"] for a in d["attempts"]] == [500, 500] for d in deliveries)
    assert all(request["after_run"] for request in receiver.requests)
    assert len(receiver.requests) == 8 and all(request["valid"] for request in receiver.requests)
    last_step_end = max(step["finished_at"] for step in log["steps"])
    assert all(attempt["at"] > last_step_end for d in deliveries for attempt in d["attempts"])
    assert any("webhooks: 4 of 4 deliveries failed" in text for text in result.notices)
    steps = {p["data"]["step_id"]: p["data"] for p in receiver.payloads() if p["type"] == "step_finished"}
    assert set(steps) == {"request", "spanish", "french"} and steps["spanish"]["status"] == "completed"
    assert "output" not in steps["spanish"] and "messages" not in steps["spanish"]


def test_a_hanging_receiver_is_bounded_by_timeout_and_deadline(receiver_config: Callable[..., Path]) -> None:
    with Receiver(hang=True) as receiver:
        receiver_config(receiver.url, timeout_s=0.5, deadline_s=1.5)
        result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    assert result.status == "completed"
    [delivery] = webhooks_of(memory_log)
    assert delivery["delivered"] is False and 1 <= len(delivery["attempts"]) < 5
    assert delivery["attempts"][0]["error"].startswith("timed out after 0.5s")
    assert "deadline" in delivery["last_error"]
    assert len(receiver.requests) == len(delivery["attempts"])


def test_410_gone_is_one_attempt_then_stop(receiver_config: Callable[..., Path]) -> None:
    with Receiver(default=410) as receiver:
        receiver_config(receiver.url)
        result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    assert result.status == "completed"
    assert len(receiver.requests) == 1
    [delivery] = webhooks_of(memory_log)
    assert [a["status"] for a in delivery["attempts"]] == [410] and not delivery["delivered"]
    assert "410 Gone" in delivery["last_error"] and "stopped" in delivery["last_error"]


def test_step_failed_is_delivered_with_the_redacted_error(receiver_config: Callable[..., Path],
                                                          fake_server: FakeLLMServer, keys: dict[str, str]) -> None:
    key = keys["TEST_OPENAI_KEY"]
    fake_server.set_error_rule(lambda index, request: (400, f"bad request (key {key})")
                               if "French" in json.dumps(request.body) else None)
    with Receiver() as receiver:
        receiver_config(receiver.url, events=["step_failed"])
        result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    assert result.status == "failed"
    [payload] = receiver.payloads()
    assert payload["type"] == "step_failed" and payload["data"]["step_id"] == "french"
    assert payload["data"]["status"] == "failed" and "bad request" in payload["data"]["error"]
    assert "(key ***)" in payload["data"]["error"] and key not in payload["data"]["error"]
    assert receiver.requests[0]["valid"]
    assert [d["event"] for d in webhooks_of(memory_log)] == ["step_failed"]


def test_429_honours_retry_after(receiver_config: Callable[..., Path]) -> None:
    # Retry-After beyond the deadline: no second attempt (the backoff alone would have retried in < 1 s).
    with Receiver(default=429, headers={"Retry-After": "3600"}) as receiver:
        receiver_config(receiver.url)
        _, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    [delivery] = webhooks_of(memory_log)
    assert len(receiver.requests) == 1 and [a["status"] for a in delivery["attempts"]] == [429]
    assert "after the deadline" in delivery["last_error"]
    with Receiver([429, 200], headers={"Retry-After": "0"}) as receiver:
        receiver_config(receiver.url)
        _, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    [delivery] = webhooks_of(memory_log)
    assert [a["status"] for a in delivery["attempts"]] == [429, 200] and delivery["delivered"]


def test_a_refused_connection_is_retried_and_recorded(receiver_config: Callable[..., Path]) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver_config(f"http://127.0.0.1:{port}/hook", max_attempts=2)
    result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    assert result.status == "completed"
    [delivery] = webhooks_of(memory_log)
    assert len(delivery["attempts"]) == 2 and not delivery["delivered"]
    assert all(a["error"].startswith("connection error") and "status" not in a for a in delivery["attempts"])


def test_other_4xx_is_not_retried(receiver_config: Callable[..., Path]) -> None:
    with Receiver(default=400) as receiver:
        receiver_config(receiver.url)
        run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    assert len(receiver.requests) == 1


def test_no_secret_or_key_in_payloads_or_log(receiver_config: Callable[..., Path], keys: dict[str, str]) -> None:
    provider_key = keys["TEST_OPENAI_KEY"]
    # The run input carries both secrets, and include_outputs sends the start step's output (that input).
    request = f"my key is {provider_key} and the hook's is {SECRET}"
    with Receiver() as receiver:
        receiver_config(receiver.url, events=["step_finished", "run_finished"], include_outputs=True)
        result, memory_log = run_library("pipelines/translation.yml", inputs={"request": request})
    assert result.status == "completed" and len(receiver.requests) == 4
    step = next(p for p in receiver.payloads() if p["type"] == "step_finished" and p["data"]["step_id"] == "request")
    assert step["data"]["output"] == "my key is *** and the hook's is ***"
    final = next(p for p in receiver.payloads() if p["type"] == "run_finished")
    assert set(final["data"]["outputs"]) == {"translation_es", "translation_fr"}
    secret_b64 = SECRET.removeprefix("whsec_")
    sent = b"".join(r["body"] + json.dumps(r["headers"]).encode() for r in receiver.requests)
    log_text = memory_log.path.read_text(encoding="utf-8")
    for value in (provider_key, SECRET, secret_b64):
        assert value.encode() not in sent and value not in log_text
    assert json.loads(log_text)["config"]["webhooks"][0]["secret"] == "***"
    assert "query-secret-value" not in log_text


def test_a_log_with_deliveries_resumes(receiver_config: Callable[..., Path], project: Path) -> None:
    with Receiver() as receiver:
        receiver_config(receiver.url)
        first, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
        log = read_log(memory_log.path)
        assert log["webhooks"][0]["delivered"] and log["status"] == "completed"
        again, _ = run_library("pipelines/translation.yml", resume=ResumeSource.from_log(memory_log.path, log))
    assert again.status == "completed" and again.totals.resumed_steps == 3
    assert len(receiver.requests) == 2  # each run delivers its own run_finished


def test_without_webhooks_the_log_has_no_webhooks_key(project: Path, fake_server: FakeLLMServer,
                                                      server_config: Path, keys: dict[str, str]) -> None:
    result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "Good morning"})
    assert result.status == "completed" and "webhooks" not in read_log(memory_log.path)


def test_the_cli_delivers_and_an_unset_secret_stops_the_run_first(
        receiver_config: Callable[..., Path], project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Receiver() as receiver:
        receiver_config(receiver.url)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-m", "orchestrai", "run", "pipelines/translation.yml", "--input",
                               "request=hi", "--json"], cwd=project, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert len(receiver.requests) == 1 and receiver.requests[0]["valid"]
        assert read_log(Path(json.loads(done.stdout)["log"]))["webhooks"][0]["delivered"] is True
        env.pop("WEBHOOK_SECRET")
        unset = subprocess.run([sys.executable, "-m", "orchestrai", "run", "pipelines/translation.yml", "--input",
                                "request=hi"], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert unset.returncode != 0 and "Traceback" not in unset.stderr
    assert "config.yml:9: webhooks[0].secret is ${WEBHOOK_SECRET}, but WEBHOOK_SECRET is not set" in unset.stderr
    assert len(receiver.requests) == 1 and len(read_log(Path(json.loads(done.stdout)["log"]))["steps"]) == 3


BAD = """\
webhooks:
  - url: "https://exa mple.com/hook"
    secret: whsec_bm90IGxvbmcgZW5vdWdo
  - url: http://hooks.example.com/orchestrai
    secret: "${WEBHOOK_SECRET}"
    events: [run_finishd, step_failed]
  - url: ftp://127.0.0.1/hook
    secret: not-a-whsec-secret-at-all
  - url: http://10.0.0.7:8080/hook
    allow_insecure: true
    secret: "${WEBHOOK_SECRET}"
  - url: https://hooks.example.com:99999/x
"""


def test_validation_names_each_problem_at_its_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    path = write(project / "config.yml", BAD)
    config, problems = parse_config(path)
    assert config is None
    lines = {problem.line: problem for problem in problems if problem.line != 12}
    assert "malformed URL" in lines[2].message
    assert "decodes to 15 bytes" in lines[3].message
    assert "plain http:// to 'hooks.example.com'" in lines[4].message and "allow_insecure" in (lines[4].hint or "")
    assert "unknown event 'run_finishd'" in lines[6].message and lines[6].hint == "did you mean 'run_finished'?"
    assert "scheme 'ftp'" in lines[7].message
    assert "not a Standard Webhooks secret" in lines[8].message
    assert 9 not in lines and 10 not in lines and 11 not in lines  # allow_insecure: plain http accepted
    last = sorted(problem.message for problem in problems if problem.line == 12)
    assert len(last) == 2 and "malformed URL" in last[1] and "has no secret" in last[0]
    assert len(problems) == 8 and all(str(problem).startswith("config.yml:") for problem in problems)


def test_validate_command_reports_path_line_without_a_traceback(project: Path) -> None:
    write(project / "config.yml", "webhooks:\n  - url: http://hooks.example.com/x\n    secret: ${WEBHOOK_SECRET}\n")
    env = {key: value for key, value in os.environ.items() if key != "WEBHOOK_SECRET"}
    done = subprocess.run([sys.executable, "-m", "orchestrai", "validate", "pipelines/translation.yml"], cwd=project,
                          env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    assert "config.yml:2" in done.stderr + done.stdout and "plain http://" in done.stderr + done.stdout


def test_loopback_http_and_https_validate(project: Path) -> None:
    write(project / "config.yml", f"""
        webhooks:
          - {{url: "http://127.0.0.1:8000/h", secret: {SECRET}}}
          - {{url: "http://localhost/h", secret: {SECRET}}}
          - {{url: "http://[::1]:9/h", secret: {SECRET}}}
          - {{url: "https://hooks.example.com/h?t=1", secret: {SECRET}, events: [step_failed, tool_called]}}
        """)
    config, problems = parse_config(project / "config.yml")
    assert problems == [] and config is not None
    assert [e.url for e in config.webhook_endpoints()][0] == "http://127.0.0.1:8000/h"
    assert config.redacted()["webhooks"][3] == {**config.redacted()["webhooks"][3], "secret": "***",
                                                "url": "https://hooks.example.com/h?…"}


def test_an_unset_secret_is_a_config_error_with_its_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    write(project / "config.yml", "log_dir: logs\nwebhooks:\n  - url: https://h.example.com/x\n"
                                  "    secret: ${WEBHOOK_SECRET}\n")
    config, problems = parse_config(project / "config.yml")
    assert problems == [] and config is not None  # validate passes without the variable
    with pytest.raises(ConfigError, match=r"config.yml:4: webhooks\[0\].secret is \$\{WEBHOOK_SECRET\}"):
        config.webhook_endpoints()
