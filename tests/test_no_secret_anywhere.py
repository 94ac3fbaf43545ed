"""One real CLI run with every artifact on (memory log, event stream, webhooks, OpenTelemetry with
message contents, reports in HTML, Markdown and PDF) while the model's answer and a provider error
both carry the API key: no configured secret may appear in any of them."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer

pytest.importorskip("opentelemetry.sdk")

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"a-webhook-secret-of-32-bytes!!!!").decode()
COLLECTOR_KEY = "hny-collector-key-0123456789"


class Sink:
    """A loopback HTTP server that keeps every request (path, headers, body) and answers 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.server.shutdown()
    server.server.server_close()


def cli(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrai", *args], cwd=project, env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=180)


def test_no_configured_secret_reaches_any_artifact(project: Path, keys: dict[str, str], fake_server: FakeLLMServer,
                                                   sink: Sink) -> None:
    key = keys["TEST_OPENAI_KEY"]
    write(project / "config.yml", f"""
        providers:
          openai: {{base_url: {fake_server.base_url}, api_key: "${{TEST_OPENAI_KEY}}", timeout_s: 5}}
        default_model_config: {{model: gpt-4o-mini}}
        retry: {{max_attempts: 2, base_delay_s: 0.01, max_delay_s: 0.02}}
        log_dir: logs
        webhooks:
          - {{url: "{sink.url}/hook", secret: "${{WEBHOOK_SECRET}}", include_outputs: true,
              events: [run_started, step_finished, step_failed, run_finished]}}
        otel:
          endpoint: {sink.url}
          headers: {{x-collector-key: "${{COLLECTOR_KEY}}"}}
          capture_content: true
        """)
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: leaky, supplement: LEAKY, critical: false}
          - {module: scrutinizer, inputs: [request], output_name: broken, supplement: BROKEN, critical: false}
        """)
    fake_server.queue_reply(f"here is the key: {key}", match="LEAKY")
    for _ in range(2):  # both attempts of the second step are refused with the key in the error
        fake_server.queue_reply(f'{{"error": {{"message": "bad key {key}"}}}}', status=500, match="BROKEN")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "WEBHOOK_SECRET": WEBHOOK_SECRET,
           "COLLECTOR_KEY": COLLECTOR_KEY}
    run = cli(project, env, "run", "p.yml", "--input", f"request=please {key}", "--events", "events.jsonl",
              "--no-cache")
    assert run.returncode == 0, run.stderr[-2000:]  # partial: the broken step is not critical
    [log] = (project / "logs").glob("*.json")
    texts = {"stdout": run.stdout, "stderr": run.stderr, "log": log.read_text(),
             "events": (project / "events.jsonl").read_text()}
    assert "here is the key: ***" in texts["log"]  # the answer reached the log, redacted
    hooks = [(headers, body) for path, headers, body in sink.requests if path == "/hook"]
    spans = [(headers, body) for path, headers, body in sink.requests if path == "/v1/traces"]
    assert len(hooks) >= 4 and spans
    for number, (headers, body) in enumerate(hooks):
        texts[f"webhook {number}"] = repr(headers) + body.decode()
    for number, (headers, body) in enumerate(spans):
        assert headers["x-collector-key"] == COLLECTOR_KEY  # the collector's own key goes to it, and only there
        texts[f"spans {number}"] = body.decode("utf-8", "replace")
    assert any("here is the key: ***" in text for name, text in texts.items() if name.startswith("spans"))
    for suffix in ("html", "md", "pdf"):
        if suffix == "pdf" and (shutil.which("chromium") is None or shutil.which("pdftotext") is None):
            if os.environ.get("CI"):
                pytest.fail("chromium and pdftotext are installed by .ci/run")
            continue
        made = cli(project, env, "report", log.stem.rsplit("-", 1)[-1], "-o", f"report.{suffix}")
        assert made.returncode == 0, made.stderr[-2000:]
        target = project / f"report.{suffix}"
        texts[suffix] = (subprocess.run(["pdftotext", str(target), "-"], capture_output=True, text=True,
                                        check=True).stdout if suffix == "pdf" else target.read_text())
    assert "here is the key: ***" in texts["html"]
    for name, text in texts.items():
        for secret in (key, WEBHOOK_SECRET, COLLECTOR_KEY, keys["TEST_ANTHROPIC_KEY"]):
            assert secret not in text, f"{secret[:8]}... in {name}"


def test_batch_results_and_eval_reports_hold_no_secret(project: Path, server_config: Path, keys: dict[str, str],
                                                       fake_server: FakeLLMServer) -> None:
    """A model that repeats the key: the batch's results file and the eval's JSON, JUnit and HTML show `***`."""
    key = keys["TEST_OPENAI_KEY"]
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: answer}
        """)
    write(project / "rows.jsonl", '{"request": "one"}\n{"request": "two"}\n')
    write(project / "evals" / "leak.yml", """
        pipeline: ../p.yml
        tests: [{vars: {request: one}}]
        assert: [{type: equals, value: "nothing"}]
        """)
    for _ in range(3):
        fake_server.queue_reply(f"the key is {key}")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **keys}
    batch = cli(project, env, "batch", "p.yml", "--data", "rows.jsonl", "-o", "out.jsonl", "--no-cache", "--quiet")
    assert batch.returncode == 0, batch.stderr[-2000:]
    evaluated = cli(project, env, "eval", "evals/leak.yml", "--json", "--junit", "eval.xml", "-o", "eval.html",
                    "--no-cache")
    assert evaluated.returncode == 1, evaluated.stderr[-2000:]  # equals "nothing" fails, its message shows the output
    texts = {"results": (project / "out.jsonl").read_text(), "eval json": evaluated.stdout,
             "junit": (project / "eval.xml").read_text(), "eval html": (project / "eval.html").read_text(),
             "stderr": batch.stderr + evaluated.stderr}
    assert "the key is ***" in texts["results"] and "the key is ***" in texts["eval json"]
    for name, text in texts.items():
        assert key not in text, f"the key in {name}"
