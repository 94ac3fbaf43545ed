"""`orchestrai report`: HTML (checked in real headless Chromium), Markdown, PDF (pdftoppm), comparisons,
and bad input (unknown run, a log cut short, an older log, a run still journaling), from real runs
against the loopback fake LLM server: a fan-out, a loop, a tool call, a retry after a 500, a failed step."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import run_library
from typer.testing import CliRunner

from orchestrai.cli.commands import app
from orchestrai.report.pdf import browser_command, find_browser

PLAN = ("{type: object, properties: {topics: {type: array, items: {type: string}}}, required: [topics], "
        "additionalProperties: false}")
REVIEW = "{type: object, properties: {score: {type: integer}, feedback: {type: string}}, required: [score, feedback]}"
TOP_LEVEL = ["request", "plan", "findings", "summary", "refine", "answer", "broken"]


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def prompts(project: Path) -> None:
    for name, text in {"planner": "You are a planner. List topics.",
                       "researcher": "You are a researcher of {{ topic }}.", "synth": "You are a synthesizer.",
                       "writer": "You are a writer.",
                       "critic": "You are a critic. Score the draft.", "agent": "You are an agent. Use your tools.",
                       "broken": "You are broken."}.items():
        write(project / "system_prompts" / f"{name}.md", text + "\n")


def demo_pipeline(project: Path) -> Path:
    prompts(project)
    return write(project / "demo.yml", f"""
        name: demo
        pipeline:
          - {{module: start_module, output_name: request}}
          - {{module: planner, inputs: [request], output_name: plan, output_schema: {PLAN}}}
          - {{module: researcher, id: findings, foreach: plan.topics, as: topic, output_name: findings}}
          - {{module: synth, inputs: [findings], output_name: summary}}
          - id: refine
            loop:
              max_iterations: 3
              until: "review.score >= 8"
              steps:
                - {{module: writer, inputs: [request], optional_inputs: [review], output_name: draft}}
                - {{module: critic, inputs: [draft], output_name: review, output_schema: {REVIEW}}}
            output: draft
            output_name: final_draft
          - {{module: agent, inputs: [request], tools: [calculate], output_name: answer}}
          - {{module: broken, id: broken, inputs: [summary], output_name: broken_out}}
        """)


def script_demo(server: FakeLLMServer, *, draft: str = "draft two <script>alert(1)</script>") -> None:
    """Replies for the demo: topic-B's first call gets a 500 (retried), `broken` a 400 (fails the step)."""
    server.queue_reply(json.dumps({"topics": ["topic-A", "topic-B", "topic-C"]}), match="You are a planner")
    server.queue_reply("draft one", match="You are a writer")
    server.queue_reply('{"score": 4, "feedback": "more numbers"}', match="You are a critic")
    server.queue_reply(draft, match="You are a writer")
    server.queue_reply('{"score": 9, "feedback": "good"}', match="You are a critic")
    server.queue_tool_calls([("calculate", {"expression": "6 * 7"})], match="You are an agent")
    server.queue_reply("the answer is 42", match="You are an agent")
    failed_once: list[int] = []

    def rule(index: int, request: Any) -> tuple[int, str, dict[str, str]] | None:
        text = json.dumps(request.body)
        if "You are broken" in text:
            return 400, "this request is rejected", {}
        if "topic-B" in text and "You are a researcher" in text and not failed_once:
            failed_once.append(index)
            return 500, "the server broke", {}
        return None

    server.set_error_rule(rule)


@pytest.fixture
def demo(project: Path, server_config: Path, keys: dict[str, str], fake_server: FakeLLMServer) -> Path:
    """The memory log of one demo run (rate limit: one call at a time, so the fan-out's items wait)."""
    config = server_config.read_text() + "rate_limits: {openai: {max_concurrent: 1}}\n"
    server_config.write_text(config)
    fake_server.latency_s = 0.03
    script_demo(fake_server)
    result, log = run_library(demo_pipeline(project), inputs={"request": "R"}, use_cache=False)
    assert result.status == "failed"
    assert log.path is not None
    return Path(log.path)


def browser() -> str:
    found = find_browser()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI installs it: .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = browser_command(browser(), tmp_path / f"profile-{len(list(tmp_path.iterdir()))}", *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


class Dom(HTMLParser):
    """The elements of a dumped DOM as (tag, attributes), and whether each is inside a hidden group."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    def having(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]


def parse(html: str) -> Dom:
    dom = Dom()
    dom.feed(html)
    return dom


def test_the_html_report_in_headless_chromium(demo: Path, project: Path, tmp_path: Path) -> None:
    result = run_cli("report", str(demo), "-o", str(tmp_path / "report.html"))
    assert result.exit_code == 0, result.output
    page = tmp_path / "report.html"
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1400,2000", f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 20_000  # a page with content, not a blank one
    dom = parse(chromium(tmp_path, "--dump-dom", page.as_uri()).stdout)
    log = json.loads(demo.read_text())
    top = {s["id"]: s for s in log["steps"] if not s.get("parent")}
    assert list(top) == TOP_LEVEL
    nodes = {a["data-step"]: a["data-status"] for a in dom.having("g", "node")}
    assert {k: v for k, v in nodes.items() if k in top} == {k: s["status"] for k, s in top.items()}
    assert top["broken"]["status"] == "failed" and top["findings"]["status"] == "completed"
    # The timeline: a bar per record, and the attempts' segments.
    bars = dom.having("rect", "bar")
    assert len(bars) == len(log["steps"])
    attempts = [a for s in log["steps"] for a in s["attempts"]]
    kinds = [a["data-kind"] for a in dom.having("rect", "seg")]
    assert kinds.count("call") == sum("latency_s" in a for a in attempts)
    assert kinds.count("failed") == sum("error" in a for a in attempts) >= 2  # topic-B's 500, broken's 400
    assert kinds.count("retry_wait") == sum(1 for a in attempts if a.get("wait_s")) >= 1
    assert kinds.count("rate_wait") == sum(1 for a in attempts if a.get("rate_limit_wait_s")) >= 1
    # Totals equal the log's.
    cells = {a.get("data-total"): a for _, a in dom.elements if a.get("data-total")}
    assert {"input_tokens", "output_tokens", "cost"} <= set(cells)
    text = "".join(dom.texts)
    assert f"{log['totals']['input_tokens']:,}" in text and f"{log['totals']['output_tokens']:,}" in text
    by_step = [a for t, a in dom.elements if t == "tr" and "data-input-tokens" in a]
    assert [a["data-step"] for a in by_step] == TOP_LEVEL
    for name in ("input_tokens", "output_tokens"):
        assert sum(int(a[f"data-{name.replace('_', '-')}"]) for a in by_step) == log["totals"][name] > 0
    assert round(sum(float(a["data-cost"] or 0) for a in by_step), 6) == round(log["totals"]["cost_usd"], 6)
    # Errors first: the failure box comes before the graph, and names the step and the server's message.
    html = page.read_text()
    assert html.index("id='errors'") < html.index("id='graph'") < html.index("id='timeline'")
    assert "this request is rejected" in html.split("id='errors'")[1].split("</section>")[0]
    # A model's <script> is text: the page's only script is its own.
    assert [t for t, _ in dom.elements].count("script") == 1
    assert "draft two <script>alert(1)</script>" in text
    # The tool call, with its arguments and result, and the fan-out's items under their step.
    [tool] = [a for t, a in dom.elements if t == "tr" and a.get("data-tool")]
    assert tool["data-tool"] == "calculate" and "6 * 7" in text
    items = [a["data-step"] for a in dom.having("g", "row") if a.get("data-parent") == "findings"]
    assert items == ["findings[0]", "findings[1]", "findings[2]"]


def test_the_page_makes_no_network_request(demo: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert run_cli("report", str(demo), "-o", str(page)).exit_code == 0
    html = page.read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)|url\(\s*["']?([^"')]*)|@import\s+["']?([^"';]*)""", html)
    found = [u for group in urls for u in group if u]
    assert all(u.startswith(("#", "data:")) for u in found), found


def test_markdown_has_tables_failed_steps_first_and_escaped_outputs(demo: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    assert run_cli("report", str(demo), "-o", str(target)).exit_code == 0
    text = target.read_text()
    assert "| step | status | time | input tokens | output tokens | cost |" in text
    assert "| model | calls | input tokens | output tokens | cost |" in text
    steps = text.split("### Steps")[1].split("###")[0]
    rows = [line.split("|")[1].strip() for line in steps.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1] == "broken" and rows[-1] == "**total**"  # failed first, after the header row
    assert "### Failed steps" in text and text.index("### Failed steps") < text.index("### Steps")
    assert "this request is rejected" in text
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "### Timeline" in text and "findings (completed, 3 items)" in text


def test_the_pdf_has_non_blank_pages(demo: Path, tmp_path: Path) -> None:
    browser()
    if shutil.which("pdftoppm") is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm is not installed (CI installs poppler-utils: .ci/run)")
        pytest.skip("pdftoppm is not installed (apt-get install poppler-utils)")
    target = tmp_path / "report.pdf"
    result = run_cli("report", str(demo), "-o", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-r", "40", str(target), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.ppm"))
    assert len(pages) >= 2  # every step open: more than one page
    for page in pages:
        assert non_white_fraction(page) > 0.01
    text = subprocess.run(["pdftotext", str(target), "-"], capture_output=True, text=True, check=True).stdout
    assert "this request is rejected" in text and "refine#2/draft" in text  # the nested steps are open


def non_white_fraction(ppm: Path) -> float:
    """The share of pixels that are not white in a binary PPM (P6) file, as pdftoppm writes it."""
    data = ppm.read_bytes()
    magic, width, height, _depth, pixels = data.split(maxsplit=4)
    assert magic == b"P6"
    rgb = pixels[: int(width) * int(height) * 3]
    dark = sum(1 for i in range(0, len(rgb), 3) if min(rgb[i], rgb[i + 1], rgb[i + 2]) < 235)
    return dark / (int(width) * int(height))


def test_two_runs_compared(demo: Path, project: Path, fake_server: FakeLLMServer, tmp_path: Path) -> None:
    fake_server.reset()
    script_demo(fake_server, draft="draft three, much better")
    write(project / "demo.yml", (project / "demo.yml").read_text().replace(
        "  - {module: broken, id: broken, inputs: [summary], output_name: broken_out}\n", ""))
    result, second = run_library(project / "demo.yml", inputs={"request": "R"}, use_cache=False)
    assert result.status == "completed" and second.path is not None
    target = tmp_path / "compare.html"
    done = run_cli("report", str(demo), str(second.path), "-o", str(target))
    assert done.exit_code == 0, done.output
    html = target.read_text()
    assert "<del>two</del>" in html and "<ins>three," in html and "&lt;script&gt;" in html
    assert "<script>alert" not in html
    dom = parse(html)
    only_a = [a["data-step"] for t, a in dom.elements if t == "li" and a.get("data-step")]
    assert only_a == ["broken"]
    compared = [a["data-step"] for t, a in dom.elements if t == "tr" and a.get("data-step")]
    assert compared[:3] == ["request", "plan", "findings"] and "refine#2/draft" in compared
    markdown = tmp_path / "compare.md"
    assert run_cli("report", str(demo), str(second.path), "-o", str(markdown)).exit_code == 0
    text = markdown.read_text()
    assert "-draft two <script>alert(1)</script>\n+draft three, much better" in text  # inside a ```diff fence
    assert "Only in A: broken" in text and "| refine#2/draft | completed | completed |" in text


def test_an_unknown_run_is_one_line_and_exit_2(project: Path, server_config: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrai", "report", "nosuchrun", "--log-dir", "logs"],
                          cwd=project, capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode == 2
    assert "no run 'nosuchrun' in logs" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2
    wrong = run_cli("report", "nosuchrun", "-o", "report.docx")
    assert wrong.exit_code == 2 and "a report is .html, .md or .pdf" in wrong.output
    for name, text in (("list.json", "[1, 2]"), ("garbage.json", "\x00\x01 not json at all")):
        write(project / name, text)
        done = subprocess.run([sys.executable, "-m", "orchestrai", "report", name], cwd=project, capture_output=True,
                              text=True, timeout=60, env=os.environ)
        assert done.returncode == 2 and "not a memory log" in done.stderr and "Traceback" not in done.stderr


def test_a_pdf_without_chromium_says_how_to_install_it(demo: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRAI_CHROMIUM", str(tmp_path / "no-such-browser"))
    result = run_cli("report", str(demo), "-o", str(tmp_path / "report.pdf"))
    assert result.exit_code == 2 and not (tmp_path / "report.pdf").exists()
    assert "a PDF report needs Chromium, which is not installed" in result.output
    assert "apt-get install chromium" in result.output


def test_a_log_cut_short_renders_what_it_holds(demo: Path, tmp_path: Path) -> None:
    text = demo.read_text()
    cut = demo.with_name("cut-" + demo.name)
    cut.write_text(text[: text.index('"id":"refine#1/review"') + 40])  # inside a step line
    target = tmp_path / "cut.html"
    result = run_cli("report", str(cut), "-o", str(target))
    assert result.exit_code == 0, result.output
    html = target.read_text()
    assert "the log is cut short" in html and "refine#1/draft" in html and "refine#1/review" not in html
    assert "data-step='findings[2]'" in html  # everything before the cut
    header_only = tmp_path / ("head-" + demo.name)
    header_only.write_text(text[: text.index('"versions"')])  # cut inside the run's own fields
    assert run_cli("report", str(header_only), "-o", str(target)).exit_code == 0
    html = target.read_text()
    assert "unknown (log cut short)" in html and "this log has no totals" in html and "0 steps could be read" in html
    run_id = demo.name.rsplit("-", 1)[1].removesuffix(".json")
    assert f"run <code>{run_id}</code>" in html
    demo.unlink()  # the whole file gone: the cut one is found by its run id
    assert run_cli("report", run_id, "--log-dir", str(cut.parent), "-o", str(target)).exit_code == 0


def test_an_older_log_says_what_it_lacks(demo: Path, tmp_path: Path) -> None:
    log = json.loads(demo.read_text())
    del log["edges"]
    for step in log["steps"]:
        del step["attempts"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(log))
    target = tmp_path / "old.md"
    assert run_cli("report", str(old), "-o", str(target)).exit_code == 0
    text = target.read_text()
    assert "this log has no graph edges (written by an older orchestrai)" in text
    assert "this log has no attempts per step" in text
    assert run_cli("report", str(old), "-o", str(tmp_path / "old.html")).exit_code == 0


def test_a_run_still_journaling_shows_what_finished(demo: Path, tmp_path: Path) -> None:
    log = json.loads(demo.read_text())
    header = {k: v for k, v in log.items() if k not in ("steps", "status", "totals", "finished_at", "notices",
                                                         "message")}
    top = [s["id"] for s in log["steps"] if not s.get("parent")]
    lines = [json.dumps({"type": "run", **header, "step_ids": top, "plan": []})]
    lines += [json.dumps({"type": "step", **s}) for s in log["steps"][:4]]
    journal = tmp_path / demo.name.replace(".json", ".journal.jsonl")
    journal.write_text("\n".join(lines) + '\n{"type": "step", "id": "summ')  # the last line cut mid-write
    target = tmp_path / "running.html"
    result = run_cli("report", log["run_id"], "--log-dir", str(tmp_path), "-o", str(target))
    assert result.exit_code == 0, result.output
    html = target.read_text()
    assert "data-status='running/interrupted'" in html and "the run has not finished" in html
    dom = parse(html)
    statuses = {a["data-step"]: a["data-status"] for a in dom.having("details", "step")}
    assert statuses["plan"] == "completed" and statuses["broken"] == "interrupted"


def test_logs_show_open_writes_the_report_beside_the_log(demo: Path) -> None:
    result = run_cli("logs", "show", demo.name.rsplit("-", 1)[1].removesuffix(".json"), "--open",
                     "--log-dir", str(demo.parent))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(demo) + ".html"
    assert "<svg class='timeline'" in Path(result.output.strip()).read_text()


def test_no_artifact_holds_a_configured_secret(demo: Path, keys: dict[str, str], tmp_path: Path) -> None:
    secret = keys["TEST_OPENAI_KEY"]
    log = json.loads(demo.read_text())  # a key in the log (an older run, a key the config knows only now)
    log["steps"][1]["output"] = {"topics": [f"leaked {secret}"]}
    log["steps"][1]["error"] = f"bad key {secret}"
    demo.write_text(json.dumps(log))
    texts = []
    for suffix in ("html", "md"):
        target = tmp_path / f"report.{suffix}"
        assert run_cli("report", str(demo), "-o", str(target)).exit_code == 0
        texts.append(target.read_text())
    if find_browser() is not None and shutil.which("pdftotext"):
        target = tmp_path / "report.pdf"
        assert run_cli("report", str(demo), "-o", str(target)).exit_code == 0
        texts.append(subprocess.run(["pdftotext", str(target), "-"], capture_output=True, text=True,
                                    check=True).stdout)
    assert run_cli("logs", "show", str(demo), "--open").exit_code == 0
    texts.append(Path(str(demo) + ".html").read_text())
    for text in texts:
        assert "leaked ***" in text and secret not in text


class DevTools:
    """A headless Chromium driven over the DevTools protocol on a loopback port: a page loaded, every
    request it made (Network.requestWillBeSent) recorded, and JavaScript evaluated in it."""

    def __init__(self, tmp_path: Path, page: Path) -> None:
        self.page, self.number = page, 0
        self.urls: list[str] = []
        profile = tmp_path / f"cdp-{page.stem}"
        self.process = subprocess.Popen(browser_command(browser(), profile, "--remote-debugging-port=0",
                                                        "about:blank"),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._connect(profile / "DevToolsActivePort")
        except BaseException:
            self.process.kill()
            raise

    def _connect(self, port_file: Path) -> None:
        for _ in range(600):  # a bound, not a timing assert: the browser writes the file when it listens
            if port_file.is_file() and port_file.read_text().strip():
                break
            assert self.process.poll() is None, "chromium exited before it listened"
            time.sleep(0.1)
        from urllib.request import urlopen  # loopback only: the browser's own debugging port

        from websockets.sync.client import connect

        with urlopen(f"http://127.0.0.1:{int(port_file.read_text().split()[0])}/json/list", timeout=30) as answer:
            target = next(t for t in json.load(answer) if t["type"] == "page")
        self.closing = ExitStack()
        self.socket = self.closing.enter_context(connect(target["webSocketDebuggerUrl"], max_size=None,
                                                         open_timeout=30))

    def __enter__(self) -> DevTools:
        self.command("Network.enable")
        self.command("Page.navigate", url=self.page.as_uri())
        for _ in range(600):  # until the page and everything it asks for have loaded
            if self.evaluate("document.readyState") == "complete":
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closing.close()
        self.process.kill()
        self.process.wait(timeout=30)

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command; its result, once every event before it is recorded."""
        self.number += 1
        self.socket.send(json.dumps({"id": self.number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("method") == "Network.requestWillBeSent":
                self.urls.append(message["params"]["request"]["url"])
            if message.get("id") == self.number:
                return dict(message.get("result") or {})

    def evaluate(self, expression: str) -> Any:
        return self.command("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


def requests_made(tmp_path: Path, page: Path) -> list[str]:
    with DevTools(tmp_path, page) as browser_page:
        return browser_page.urls


def test_the_devtools_protocol_sees_no_request_but_the_page_itself(demo: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert run_cli("report", str(demo), "-o", str(page)).exit_code == 0
    # The recorder sees a page's requests: a control page that loads an image from a (never resolved) host.
    control = write(tmp_path / "control.html", "<html><body><img src='http://images.example.invalid/a.png'>"
                                               "<link rel='stylesheet' href='https://css.example.invalid/s.css'>"
                                               "</body></html>")
    assert "http://images.example.invalid/a.png" in requests_made(tmp_path, control)
    assert requests_made(tmp_path, page) == [page.as_uri()]


def test_a_huge_fanout_draws_its_first_items_and_every_failed_one(demo: Path, tmp_path: Path) -> None:
    log = json.loads(demo.read_text())
    item = next(s for s in log["steps"] if s["id"] == "findings[0]")
    at = log["steps"].index(item)
    items = [{**item, "id": f"findings[{n}]", "status": "failed" if n == 900 else "completed"} for n in range(1000)]
    log["steps"][at: at + 3] = items
    big = tmp_path / "big.json"
    big.write_text(json.dumps(log))
    target = tmp_path / "big.html"
    assert run_cli("report", str(big), "-o", str(target)).exit_code == 0
    dom = parse(target.read_text())
    rows = [a["data-step"] for a in dom.having("g", "row") if a.get("data-parent") == "findings"]
    assert len(rows) == 201 and rows[-1] == "findings[900]"  # the first 200 and the failed one
    assert "799 rows left out (all in the log)" in target.read_text()
    assert "… and 799 more (all in the memory log)" in target.read_text()


def test_a_log_with_fields_of_the_wrong_type_is_one_line(demo: Path, tmp_path: Path) -> None:
    log = json.loads(demo.read_text())
    log["steps"][1]["usage"] = "lots"
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(log))
    done = subprocess.run([sys.executable, "-m", "orchestrai", "report", str(odd), "-o", str(tmp_path / "odd.html")],
                          capture_output=True, text=True, timeout=60, env=os.environ)
    assert done.returncode == 2 and "a memory log orchestrai cannot read" in done.stderr
    assert "Traceback" not in done.stderr


def test_clicks_fold_and_unfold_the_timeline_rows_and_the_dag_children(demo: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert run_cli("report", str(demo), "-o", str(page)).exit_code == 0
    items = "[...document.querySelectorAll('svg.timeline g.row[data-parent=\"findings\"]')]"
    shown = f"{items}.map(r => r.style.display !== 'none')"
    row_of = "document.querySelector('svg.timeline g.row[data-step=\"{}\"]')"
    click = "{}.dispatchEvent(new MouseEvent('click', {{bubbles: true}}))"
    with DevTools(tmp_path, page) as chrome:
        assert chrome.evaluate(shown) == [True, True, True]  # a short timeline starts open
        before = chrome.evaluate(row_of.format("summary") + ".getAttribute('transform')")
        chrome.evaluate(click.format(row_of.format("findings") + ".querySelector('text')"))
        assert chrome.evaluate(shown) == [False, False, False]
        after = chrome.evaluate(row_of.format("summary") + ".getAttribute('transform')")
        assert before != after  # the rows below moved up
        chrome.evaluate(click.format(row_of.format("findings") + ".querySelector('text')"))
        assert chrome.evaluate(shown) == [True, True, True]
        assert chrome.evaluate(row_of.format("summary") + ".getAttribute('transform')") == before
        block = "document.querySelector('svg.dag g.children[data-parent=\"findings\"]').style.display"
        assert chrome.evaluate(block) == "none"
        chrome.evaluate(click.format("document.querySelector('svg.dag g.node[data-step=\"findings\"]')"))
        assert chrome.evaluate(block) == ""
        assert chrome.evaluate("document.getElementById('step-findings').open") is True
        assert chrome.urls == [page.as_uri()]
