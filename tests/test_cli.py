"""The `orchestrai` command line, run as a user runs it: a subprocess against the loopback fake LLM server.

Each test starts `python -m orchestrai ...` in the project folder with fake keys only, and checks the
exit code, what reaches stdout / stderr, what the fake server received and the memory log on disk.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, write
from fake_llm_server import FakeLLMServer

TIMEOUT_S = 60
PRICE_4O_MINI = (0.15, 0.60)  # USD per 1M tokens, the built-in price of gpt-4o-mini

# Words only one prompt sends (each step's system prompt), for the server's `match=`.
PLANNER = "senior planner"
REVIEWER = "demanding reviewer"
ENHANCER = "You improve plans"
MARKDOWN = "format text as clean"

CHAIN = """
    name: chain
    pipeline:
      - {module: start_module, output_name: request}
      - {module: task_planner, inputs: [request], output_name: plan}
      - {module: scrutinizer, inputs: [request, plan], output_name: review%s}
      - {module: enhancer, inputs: [request, review], output_name: final}
    """

SHOUT_MODULE = """
    async def run(ctx, inputs):
        return inputs["request"].upper()
    """

SHOUT_PIPELINE = """
    name: shouting
    pipeline:
      - {module: start_module, output_name: request}
      - {module: shout, inputs: [request], output_name: loud}
    """


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def _own_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test's runs get an empty user cache dir: no reply may come from another test's run."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))



def cli(project: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None,
        timeout: float = TIMEOUT_S, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run `python -m orchestrai ARGS` in the project folder; stdin is empty unless `input` is given."""
    stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run([sys.executable, *python_flags, "-m", "orchestrai", *args], cwd=project,
                          env=dict(os.environ) if env is None else env, capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout, **stdin)


def popen(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    # SIGINT back to its default: a shell without job control starts background jobs with SIGINT ignored,
    # and Python only turns Ctrl-C into KeyboardInterrupt when SIGINT is not ignored at start-up.
    return subprocess.Popen([sys.executable, "-m", "orchestrai", *args], cwd=project,
                            env=dict(os.environ) if env is None else env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def cli_together(project: Path, *commands: list[str] | tuple[list[str], dict[str, str]]
                 ) -> list[subprocess.CompletedProcess[str]]:
    """Run independent read-only commands (ARGS or (ARGS, ENV)) at the same time: start-up dominates their cost."""
    started = []
    for command in commands:
        args, env = command if isinstance(command, tuple) else (command, None)
        started.append((args, popen(project, *args, env=env)))
    done = []
    for args, proc in started:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        done.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
    return done


def wide_env() -> dict[str, str]:
    """A wide terminal, so tables show whole cells (rich reads COLUMNS)."""
    return {**os.environ, "COLUMNS": "250"}


def keyless_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("TEST_OPENAI_KEY", "TEST_ANTHROPIC_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(name, None)
    return env


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr, proc.stderr


def only_log(project: Path) -> dict[str, Any]:
    """The single finished memory log of the project; no journal may be left behind."""
    logs = sorted((project / "logs").glob("*.json"))
    assert len(logs) == 1, logs
    assert list((project / "logs").glob("*.journal.jsonl")) == []
    return json.loads(logs[0].read_text(encoding="utf-8"))


def steps_by_id(log: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in log["steps"]}


def chat_requests(server: FakeLLMServer) -> list[Any]:
    return [r for r in server.requests if r.api is not None]


def requests_with(server: FakeLLMServer, words: str) -> list[Any]:
    return [r for r in chat_requests(server) if words in (r.system or "")]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Any, proc: subprocess.Popen[str], *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended early ({proc.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail("timed out waiting for the run to reach the slow step")
        time.sleep(0.02)


def error_lines(stderr: str, *needles: str) -> list[str]:
    return [line for line in stderr.splitlines() if all(n in line for n in needles)]


# ---------------------------------------------------------------- 1. end to end


def test_planning_run_end_to_end_writes_a_complete_memory_log(project: Path, fake_server: FakeLLMServer,
                                                               server_config: Path, keys: dict[str, str]) -> None:
    replies = {PLANNER: ("PLAN: 1. find a shop 2. buy an oven", (120, 30)),
               REVIEWER: ("PROBLEMS: no budget. REVISED: 1. budget 2. shop", (150, 40)),
               ENHANCER: ("FINAL: 1. budget (S) 2. shop (M)", (170, 50)),
               MARKDOWN: ("# Bakery\n\n## Tasks\n\n1. **Budget**\n2. **Shop**", (90, 60))}
    for words, (text, usage) in replies.items():
        fake_server.queue_reply(text, usage=usage, match=words)

    proc = cli(project, "run", "pipelines/planning.yml", "--config", "config.yml", "--input", "request=Plan a bakery")

    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    markdown = replies[MARKDOWN][0]
    assert proc.stdout.endswith(markdown + "\n")
    assert fake_server.queued == [], "every scripted reply was used by its own step"

    log_path, = (project / "logs").glob("*.json")
    text = log_path.read_text(encoding="utf-8")
    assert keys["TEST_OPENAI_KEY"] not in text and keys["TEST_ANTHROPIC_KEY"] not in text
    log = only_log(project)

    assert re.fullmatch(r"[0-9a-f]+", log["run_id"]) and log["run_id"] in log_path.name
    assert log["pipeline"] == "planning"
    assert log["status"] == "completed"
    started, finished = parse_time(log["started_at"]), parse_time(log["finished_at"])
    assert started <= finished
    openai_config = log["config"]["providers"]["openai"]
    assert openai_config["api_key"] == "***" and openai_config["base_url"] == fake_server.base_url
    assert log["config"]["providers"]["anthropic"]["api_key"] == "***"
    assert log["config"]["default_model_config"] == {"model": "gpt-4o-mini", "temperature": 0.2}
    assert log["versions"]["python"] == platform.python_version()
    assert log["versions"]["openai"] == version("openai")
    assert log["versions"]["anthropic"] == version("anthropic")

    steps = log["steps"]
    assert [s["id"] for s in steps] == ["request", "task_plan", "scrutinized_task_plan", "enhanced_plan",
                                        "markdown_plan"]
    assert [s["module"] for s in steps] == ["start_module", "task_planner", "scrutinizer", "enhancer",
                                            "markdown_converter"]
    assert [s["output_name"] for s in steps] == [s["id"] for s in steps]
    assert all(s["status"] == "completed" and s["error"] is None for s in steps)

    totals = log["totals"]
    assert totals["input_tokens"] == sum(s["usage"]["input_tokens"] for s in steps) == 120 + 150 + 170 + 90
    assert totals["output_tokens"] == sum(s["usage"]["output_tokens"] for s in steps) == 30 + 40 + 50 + 60
    assert totals["cost_usd"] > 0 and totals["cost_complete"] is True
    assert totals["cost_usd"] == pytest.approx((530 * PRICE_4O_MINI[0] + 180 * PRICE_4O_MINI[1]) / 1e6, abs=1e-6)
    assert totals["duration_s"] > 0

    request_step = steps[0]
    assert request_step["output"] == "Plan a bakery" and request_step["inputs"] == {}
    assert request_step["provider"] is None and request_step["messages"] == [] and request_step["attempts"] == []

    by_words = dict(zip((PLANNER, REVIEWER, ENHANCER, MARKDOWN), steps[1:], strict=True))
    for words, step in by_words.items():
        text_reply, (tokens_in, tokens_out) = replies[words]
        assert step["output"] == text_reply
        assert step["provider"] == "openai" and step["model"] == "gpt-4o-mini"
        assert step["usage"] == {"input_tokens": tokens_in, "output_tokens": tokens_out}
        assert step["cost_usd"] == pytest.approx((tokens_in * PRICE_4O_MINI[0] + tokens_out * PRICE_4O_MINI[1]) / 1e6)
        assert [m["role"] for m in step["messages"]] == ["system", "user"]
        assert words in step["messages"][0]["content"]
        sent, = requests_with(fake_server, words)
        assert sent.system == step["messages"][0]["content"]
        assert sent.last_user_text == step["messages"][1]["content"]
        assert parse_time(step["started_at"]) <= parse_time(step["finished_at"])
        assert started <= parse_time(step["started_at"]) and parse_time(step["finished_at"]) <= finished
        assert len(step["attempts"]) == 1 and step["attempts"][0]["attempt"] == 1
        assert "error" not in step["attempts"][0]

    planner = by_words[PLANNER]
    assert planner["inputs"] == {"request": "Plan a bakery"}
    assert planner["messages"][1]["content"] == "## request\nPlan a bakery"
    assert by_words[REVIEWER]["inputs"] == {"request": "Plan a bakery", "task_plan": replies[PLANNER][0]}
    assert by_words[MARKDOWN]["inputs"] == {"enhanced_plan": replies[ENHANCER][0]}
    # Steps of a chain run one after the other.
    chain = steps[1:]
    assert all(parse_time(a["finished_at"]) <= parse_time(b["started_at"])
               for a, b in zip(chain, chain[1:], strict=False))

    sent = chat_requests(fake_server)
    assert len(sent) == 4
    assert all(r.path == "/v1/chat/completions" and r.model == "gpt-4o-mini" for r in sent)
    assert all(r.headers.get("authorization") == f"Bearer {keys['TEST_OPENAI_KEY']}" for r in sent)
    temperatures = {words: requests_with(fake_server, words)[0].body.get("temperature") for words in by_words}
    assert temperatures == {PLANNER: 0.2, REVIEWER: 0.7, ENHANCER: 0.2, MARKDOWN: 0.2}


# ---------------------------------------------------------------- 2. parallel steps over HTTP


def test_diamond_middle_steps_overlap_over_http(project: Path, fake_server: FakeLLMServer, server_config: Path,
                                                keys: dict[str, str]) -> None:
    write(project / "diamond.yml", """
        name: diamond
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: left, supplement: Spanish}
          - {module: translator, inputs: [request], output_name: right, supplement: French}
          - {module: enhancer, inputs: [left, right], output_name: joined}
        """)
    fake_server.latency_s = 0.4
    fake_server.queue_reply("hola desde la izquierda", match="Spanish")
    fake_server.queue_reply("bonjour de la droite", match="French")

    proc = cli(project, "run", "diamond.yml", "--input", "request=Good morning")

    assert proc.returncode == 0, proc.stderr
    assert fake_server.max_in_flight >= 2, "the two middle steps must be in flight together"
    sent = chat_requests(fake_server)
    assert len(sent) == 3 and fake_server.queued == []
    last = sent[-1]
    assert ENHANCER in last.system
    assert "## left\nhola desde la izquierda" in last.last_user_text
    assert "## right\nbonjour de la droite" in last.last_user_text
    # The join started only after both middle requests were answered.
    middle_ends = [end for _, end, _ in sorted(fake_server.in_flight_log)[:2]]
    assert last.received_at >= max(middle_ends)


# ---------------------------------------------------------------- 3. anthropic


def test_claude_step_goes_to_the_messages_api_with_a_system_field(project: Path, fake_server: FakeLLMServer,
                                                                  server_config: Path, keys: dict[str, str]) -> None:
    # The `anthropic:` entry has no `type:`: an entry named like a built-in provider keeps its type.
    assert "  anthropic:\n" in server_config.read_text(encoding="utf-8")
    write(project / "claude.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: spanish, supplement: Spanish,
             model_config: {model: claude-haiku-4-5}}
        """)
    fake_server.queue_reply("Buenos días", usage=(200, 10))

    proc = cli(project, "run", "claude.yml", "--input", "request=Good morning")

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Buenos días\n"
    sent, = chat_requests(fake_server)
    assert sent.path == "/v1/messages" and sent.api == "anthropic" and sent.model == "claude-haiku-4-5"
    assert "professional translator" in sent.body["system"] and "Spanish" in sent.body["system"]
    assert [m["role"] for m in sent.messages] == ["user"]
    assert sent.last_user_text == "## request\nGood morning\n\n## supplement\nSpanish"
    assert sent.body["temperature"] == 0.2 and sent.body["max_tokens"] > 0
    key = keys["TEST_ANTHROPIC_KEY"]
    assert sent.headers.get("x-api-key") == key or sent.headers.get("authorization") == f"Bearer {key}"
    assert keys["TEST_OPENAI_KEY"] not in json.dumps(sent.headers)
    step = steps_by_id(only_log(project))["spanish"]
    assert step["provider"] == "anthropic" and step["model"] == "claude-haiku-4-5"
    assert step["output"] == "Buenos días"
    assert step["cost_usd"] == pytest.approx((200 * 1.00 + 10 * 5.00) / 1e6)


def test_anthropic_entry_of_the_example_config_is_an_anthropic_provider(project: Path) -> None:
    from orchestrai.config import load_config

    shutil.copy(REPO / "config.example.yml", project / "config.yml")
    config = load_config(None)
    assert "type:" not in (REPO / "config.example.yml").read_text().split("  anthropic:")[1].split("\n  ollama:")[0], \
        "the example relies on the default"
    assert config.provider("anthropic").type == "anthropic"


# ---------------------------------------------------------------- 4. provider failures


@dataclass(frozen=True)
class Failure:
    step: str  # the step that fails
    provider: str  # the provider its error names
    needles: tuple[str, ...]  # what its error says
    attempts: int  # attempts recorded in the log
    review_requests: int  # requests of the review step that reached the server
    review_extra: str = ""  # added to the review step of CHAIN


FAILURES = {
    "401": Failure("review", "openai", ("rejected the API key (401)", "Incorrect API key provided"), 1, 1),
    "404": Failure("review", "openai", ("does not know model 'gpt-nope' (404)", "does not exist"), 1, 1,
                   ", model_config: {model: gpt-nope}"),
    "429": Failure("review", "openai", ("rate limited the request (429)", "after 3 attempts"), 3, 3),
    "500": Failure("review", "openai", ("had a server error (500)", "after 3 attempts"), 3, 3),
    "timeout": Failure("review", "slow", ("did not answer in time",), 1, 1, ", model_config: {provider: slow}"),
    "unreachable": Failure("plan", "openai", ("cannot connect to http://127.0.0.1:{port}",), 3, 0),
}


def test_provider_failures_fail_the_step_with_one_line_and_a_log(project: Path, fake_server: FakeLLMServer,
                                                                 server_config: Path, keys: dict[str, str]) -> None:
    """One run per failure, all at once against one server (each in its own project folder, told apart by
    a case word in its request and a `<case>-review` supplement on its review step)."""
    port = closed_port()
    fake_server.queue_reply("Incorrect API key provided", status=401, match="401-review")
    fake_server.queue_reply("too late", latency_s=5, match="timeout-review")
    errors = {"404-review": (404, "The model `gpt-nope` does not exist"), "429-review": (429, "Rate limit reached"),
              "500-review": (500, "The server had an error")}
    fake_server.set_error_rule(lambda index, request: next(
        (error for word, error in errors.items() if word in request.last_user_text), None))
    template = server_config.read_text(encoding="utf-8")
    runs = {}
    for case, failure in FAILURES.items():
        folder = project.parent / f"case-{case}"
        shutil.copytree(project / "system_prompts", folder / "system_prompts")
        config = template
        if case == "timeout":  # a provider of its own, so only the review step has the short timeout
            config = config.replace("providers:\n", f"providers:\n  slow:\n    base_url: {fake_server.base_url}\n"
                                    "    api_key: ${TEST_OPENAI_KEY}\n    timeout_s: 0.3\n", 1)
            config = config.replace("max_attempts: 3", "max_attempts: 1")
        elif case == "unreachable":
            config = config.replace(fake_server.base_url, f"http://127.0.0.1:{port}/v1")
        write(folder / "config.yml", config)
        write(folder / "chain.yml", CHAIN % f", supplement: {case}-review{failure.review_extra}")
        runs[case] = (folder, popen(folder, "run", "chain.yml", "--input", f"request=Plan a bakery (case {case})"))

    finished = {}
    try:
        for case, (_folder, proc) in runs.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            finished[case] = subprocess.CompletedProcess(case, proc.returncode, out, err)
    finally:
        for _, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    problems = {}
    for case, result in finished.items():
        try:
            check_failed_run(FAILURES[case], case, result, runs[case][0], fake_server, port, keys)
        except AssertionError as exc:
            problems[case] = f"{type(exc).__name__}: {exc}"
    assert not problems, "\n\n".join(f"[{case}] {problem}" for case, problem in problems.items())


def check_failed_run(failure: Failure, case: str, proc: subprocess.CompletedProcess[str], folder: Path,
                     server: FakeLLMServer, port: int, keys: dict[str, str]) -> None:
    needles = [n.format(port=port) for n in failure.needles]
    assert proc.returncode == 1, proc.stderr
    assert_no_traceback(proc)
    assert proc.stdout == "", "a failed run prints no result"
    lines = error_lines(proc.stderr, f"step '{failure.step}'", *needles)
    assert len(lines) == 1, proc.stderr
    assert keys["TEST_OPENAI_KEY"] not in proc.stderr

    log = only_log(folder)
    assert log["status"] == "failed"
    steps = steps_by_id(log)
    order = ["request", "plan", "review", "final"]
    position = order.index(failure.step)
    assert [steps[s]["status"] for s in order] == (
        ["completed"] * position + ["failed"] + ["skipped"] * (len(order) - position - 1))
    step = steps[failure.step]
    assert step["error"].startswith(f"step '{failure.step}': provider '{failure.provider}'"), step["error"]
    assert all(n in step["error"] for n in needles), step["error"]
    assert step["output"] is None
    assert len(step["attempts"]) == failure.attempts, step["attempts"]
    assert all(a["error"] and a["kind"] for a in step["attempts"])
    assert steps["final"]["error"].startswith("not run"), steps["final"]["error"]

    mine = [r for r in chat_requests(server) if f"(case {case})" in r.last_user_text]
    assert len([r for r in mine if REVIEWER in (r.system or "")]) == failure.review_requests
    if failure.step == "review":
        assert steps["plan"]["output"] and steps["plan"]["error"] is None
        assert len([r for r in mine if PLANNER in (r.system or "")]) == 1
    else:
        assert mine == []


def test_429_with_retry_after_is_retried_then_succeeds(project: Path, fake_server: FakeLLMServer, server_config: Path,
                                                      keys: dict[str, str]) -> None:
    fake_server.set_error_rule(lambda index, request: (429, "Rate limit reached", {"Retry-After": "0"})
                               if index == 0 else None)
    fake_server.queue_reply("Hola")

    proc = cli(project, "run", "pipelines/translation.yml", "--input", "request=Hello", "--max-concurrency", "1")

    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    assert "↻ spanish attempt 1 failed" in proc.stderr and "(429)" in proc.stderr
    assert len(chat_requests(fake_server)) == 3
    steps = steps_by_id(only_log(project))
    spanish = steps["spanish"]
    assert spanish["status"] == "completed" and spanish["output"] == "Hola"
    assert len(spanish["attempts"]) == 2
    assert spanish["attempts"][0]["kind"] == "rate_limit" and "429" in spanish["attempts"][0]["error"]
    assert "error" not in spanish["attempts"][1] and spanish["attempts"][1]["attempt"] == 2
    assert len(steps["french"]["attempts"]) == 1


# ---------------------------------------------------------------- 6. missing key


def test_missing_key_exits_2_with_how_to_set_it_and_sends_nothing(project: Path, fake_server: FakeLLMServer) -> None:
    write(project / "config.yml", f"""
        providers:
          openai: {{base_url: {fake_server.base_url}}}
        log_dir: logs
        """)

    proc = cli(project, "run", "pipelines/translation.yml", "--input", "request=Hello", env=keyless_env())

    assert proc.returncode == 2, proc.stderr
    assert_no_traceback(proc)
    assert "OPENAI_API_KEY" in proc.stderr and "export" in proc.stderr
    assert "step 'spanish' uses provider 'openai', which has no API key" in proc.stderr
    assert fake_server.requests == []
    assert not (project / "logs").exists() or list((project / "logs").iterdir()) == []


# ---------------------------------------------------------------- 7, 8 (--quiet), 13, 14, 15: no LLM needed
# These commands only pay Python's start-up, so they all start at once (each in its own copy of a small
# project, with no keys and no config) the first time a test asks for one; each test checks its own run.

CRASH_MODULE = """
    async def run(ctx, inputs):
        raise ValueError("the oven is on fire")
    """

CRASH_PIPELINE = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: crash, inputs: [request], output_name: out}
    """


@dataclass(frozen=True)
class Offline:
    args: tuple[str, ...]
    stdin: str | None = None  # piped to the command; None: stdin is /dev/null (as in CI)
    python_flags: tuple[str, ...] = ()


OFFLINE = {
    "piped": Offline(("run", "shout.yml"), stdin="Piped request"),
    "no_input": Offline(("run", "shout.yml")),
    "input_file": Offline(("run", "shout.yml", "--input-file", "request=brief.txt")),
    "missing_input_file": Offline(("run", "shout.yml", "--input-file", "request=missing.txt")),
    "input_without_equals": Offline(("run", "shout.yml", "--input", "bad")),
    "quiet": Offline(("run", "shout.yml", "--quiet", "--input", "request=quiet please")),
    "quiet_failed": Offline(("run", "crash.yml", "--quiet", "--input", "request=bake")),
    "project_module": Offline(("run", "shout.yml", "--input", "request=make me loud")),
    "modules": Offline(("modules",)),
    "schema": Offline(("schema",)),
    "help_importtime": Offline(("--help",), python_flags=("-X", "importtime")),
    "validate_importtime": Offline(("validate", "pipelines/planning.yml"), python_flags=("-X", "importtime")),
}


OfflineRuns = dict[str, tuple[Path, subprocess.CompletedProcess[str]]]  # name -> (its project folder, its run)


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory: pytest.TempPathFactory) -> OfflineRuns:
    root = tmp_path_factory.mktemp("offline")
    env = {name: value for name, value in os.environ.items()
           if name not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL",
                           "TEST_OPENAI_KEY", "TEST_ANTHROPIC_KEY")}
    env["XDG_CONFIG_HOME"], env["XDG_CACHE_HOME"] = str(root / "xdg-config"), str(root / "xdg-cache")
    started = {}
    try:
        for name, command in OFFLINE.items():
            folder = root / name
            shutil.copytree(REPO / "system_prompts", folder / "system_prompts")
            shutil.copytree(REPO / "pipelines", folder / "pipelines")
            write(folder / "modules" / "shout.py", SHOUT_MODULE)
            write(folder / "modules" / "crash.py", CRASH_MODULE)
            write(folder / "shout.yml", SHOUT_PIPELINE)
            write(folder / "crash.yml", CRASH_PIPELINE)
            write(folder / "brief.txt", "Brief from a file\nsecond line\n")
            proc = subprocess.Popen([sys.executable, *command.python_flags, "-m", "orchestrai", *command.args],
                                    cwd=folder, env=env, text=True, encoding="utf-8", stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE,
                                    stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL)
            if command.stdin is not None:
                assert proc.stdin is not None
                proc.stdin.write(command.stdin)  # written at once, long before the CLI looks at stdin
                proc.stdin.close()
                proc.stdin = None  # communicate() has nothing left to send
            started[name] = (folder, proc)
        done = {}
        for name, (folder, proc) in started.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            done[name] = (folder, subprocess.CompletedProcess(list(OFFLINE[name].args), proc.returncode, out, err))
    finally:
        for _, proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return done


def test_piped_stdin_becomes_the_missing_input(offline_runs: OfflineRuns) -> None:
    folder, proc = offline_runs["piped"]

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "PIPED REQUEST\n"
    assert steps_by_id(only_log(folder))["request"]["output"] == "Piped request"


def test_no_input_and_empty_stdin_exits_2_naming_the_flag(offline_runs: OfflineRuns) -> None:
    folder, proc = offline_runs["no_input"]

    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert "--input request=" in proc.stderr and "'request'" in proc.stderr
    assert not (folder / "logs").exists()


def test_input_file_is_read(offline_runs: OfflineRuns) -> None:
    folder, proc = offline_runs["input_file"]

    assert proc.returncode == 0, proc.stderr
    steps = steps_by_id(only_log(folder))
    assert steps["request"]["output"] == "Brief from a file\nsecond line\n"
    assert steps["loud"]["output"] == "BRIEF FROM A FILE\nSECOND LINE\n"


@pytest.mark.parametrize("name, words", [
    ("missing_input_file", ["--input-file request", "cannot read missing.txt"]),
    ("input_without_equals", ["--input 'bad'", "expected NAME=VALUE"]),
])
def test_bad_input_flags_exit_2_with_a_clear_message(offline_runs: OfflineRuns, name: str, words: list[str]) -> None:
    folder, proc = offline_runs[name]

    assert proc.returncode == 2
    assert_no_traceback(proc)
    assert proc.stderr.startswith("error: ")
    assert all(w in proc.stderr for w in words), proc.stderr
    assert not (folder / "logs").exists()


def test_quiet_prints_only_the_result(offline_runs: OfflineRuns) -> None:
    _, proc = offline_runs["quiet"]

    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout == "QUIET PLEASE\n"


def test_quiet_still_says_why_a_run_failed(offline_runs: OfflineRuns) -> None:
    folder, proc = offline_runs["quiet_failed"]

    assert proc.returncode == 1
    assert proc.stdout == ""
    assert steps_by_id(only_log(folder))["out"]["status"] == "failed"
    assert "out" in proc.stderr and "the oven is on fire" in proc.stderr


def test_project_module_runs_end_to_end(offline_runs: OfflineRuns) -> None:
    folder, proc = offline_runs["project_module"]

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "MAKE ME LOUD\n"
    log = only_log(folder)
    assert log["pipeline"] == "shouting" and log["status"] == "completed"
    loud = steps_by_id(log)["loud"]
    assert loud["module"] == "shout" and loud["status"] == "completed"
    assert loud["inputs"] == {"request": "make me loud"} and loud["output"] == "MAKE ME LOUD"
    assert loud["provider"] is None and loud["attempts"] == []


def test_modules_lists_builtin_prompt_and_project_modules(offline_runs: OfflineRuns) -> None:
    _, proc = offline_runs["modules"]

    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "builtin" in rows["start_module"]
    assert "prompt" in rows["task_planner"]
    assert "project" in rows["shout"]


def test_schema_is_json_describing_the_pipeline_format(offline_runs: OfflineRuns) -> None:
    _, proc = offline_runs["schema"]

    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    assert "pipeline" in schema["properties"]
    refs = schema["properties"]["pipeline"]["items"]["anyOf"]
    step, loop = [schema["$defs"][ref["$ref"].rsplit("/", 1)[-1]] for ref in refs]  # a step, or a loop
    assert "model_config" in step["properties"] and "output_name" in step["properties"]
    assert "foreach" in step["properties"] and "when" in step["properties"] and "pipeline" in step["properties"]
    assert "loop" in loop["properties"] and "max_iterations" in schema["$defs"]["LoopSpec"]["required"]


def imported_packages(importtime_stderr: str) -> set[str]:
    """Top-level package names from `python -X importtime` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    return names


@pytest.mark.parametrize("name, banned, needed", [
    ("help_importtime", {"openai", "anthropic", "wandb", "networkx", "llama_cpp", "pydantic", "jinja2"}, {"typer"}),
    # validate FILE is answered without typer (see orchestrai/cli/app.py); tests/test_startup_imports.py has more
    ("validate_importtime", {"openai", "anthropic", "wandb", "networkx", "llama_cpp", "typer"}, {"pydantic", "yaml"}),
])
def test_cheap_commands_do_not_import_heavy_libraries(offline_runs: OfflineRuns, name: str, banned: set[str],
                                                      needed: set[str]) -> None:
    _, proc = offline_runs[name]

    assert proc.returncode == 0, proc.stderr
    packages = imported_packages(proc.stderr)
    assert "orchestrai" in packages and needed <= packages, "importtime output was parsed"
    assert packages & banned == set()


# ---------------------------------------------------------------- 8. dry run, --json


def test_dry_run_needs_no_key_nor_config_and_sends_nothing(project: Path, fake_server: FakeLLMServer) -> None:
    assert not (project / "config.yml").exists()
    env = keyless_env()
    # Were anything sent despite --dry-run, it would reach the fake server, never the internet.
    env["OPENAI_BASE_URL"], env["ANTHROPIC_BASE_URL"] = fake_server.base_url, fake_server.root_url

    proc = cli(project, "run", "pipelines/planning.yml", "--dry-run", "--input", "request=Plan a bakery", env=env)

    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    assert re.search(r"^task_plan: would send to \S+", proc.stdout, re.M), proc.stdout
    assert "[system]\nYou are a senior planner." in proc.stdout
    assert "[user]\n## request\nPlan a bakery" in proc.stdout
    assert "demanding reviewer" in proc.stdout
    assert fake_server.requests == []
    log = only_log(project)
    assert log["status"] == "completed" and log["totals"]["cost_usd"] == 0


def test_json_summary_on_stdout(project: Path, fake_server: FakeLLMServer, server_config: Path,
                                keys: dict[str, str]) -> None:
    fake_server.queue_reply("Hola", match="Spanish")
    fake_server.queue_reply("Bonjour", match="French")

    proc = cli(project, "run", "pipelines/translation.yml", "--input", "request=Hello", "--json")

    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary) >= {"run_id", "status", "log", "totals", "steps", "outputs"}
    assert summary["status"] == "completed"
    assert summary["outputs"] == {"translation_es": "Hola", "translation_fr": "Bonjour"}
    assert [s["id"] for s in summary["steps"]] == ["request", "spanish", "french"]
    assert all(s["status"] == "completed" for s in summary["steps"])
    log = only_log(project)
    assert summary["run_id"] == log["run_id"]
    assert (project / summary["log"]).resolve() == next((project / "logs").glob("*.json")).resolve()
    assert summary["totals"]["input_tokens"] == log["totals"]["input_tokens"] > 0
    assert "started" not in proc.stderr, "no progress lines with --json"


# ---------------------------------------------------------------- 9. --stream


def test_stream_prints_tokens_with_the_step_prefix(project: Path, fake_server: FakeLLMServer, server_config: Path,
                                                   keys: dict[str, str]) -> None:
    write(project / "one.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, id: spanish, inputs: [request], output_name: es, supplement: Spanish}
        """)
    reply = "Buenos días a todos, amigos"
    fake_server.queue_reply(reply)

    proc = cli(project, "run", "one.yml", "--stream", "--input", "request=Good morning everyone")

    assert proc.returncode == 0, proc.stderr
    assert f"\nspanish> {reply}\n" in proc.stderr
    assert proc.stdout == reply + "\n"
    sent, = chat_requests(fake_server)
    assert sent.stream is True
    step = steps_by_id(only_log(project))["spanish"]
    assert step["output"] == reply and step["usage"]["output_tokens"] > 0


# ---------------------------------------------------------------- 10. orchestrai logs


def test_logs_lists_and_shows_a_run(project: Path) -> None:
    ran = cli(project, "run", "pipelines/translation.yml", "--dry-run", "--input", "request=Hello friends")
    assert ran.returncode == 0, ran.stderr
    log = only_log(project)
    run_id = log["run_id"]
    spanish = steps_by_id(log)["spanish"]["output"]
    assert spanish.startswith("[echo ") and "## request\nHello friends" in spanish

    wide = wide_env()
    listing, shown, as_json, missing, narrow = cli_together(
        project, (["logs"], wide), (["logs", "show", run_id[:4]], wide), (["logs", "show", "--json", run_id], wide),
        (["logs", "show", "nope"], wide), ["logs"])  # the last one as in a pipe or a CI log: 80 columns

    assert listing.returncode == 0, listing.stderr
    row, = [line for line in listing.stdout.splitlines() if run_id in line]
    assert "translation" in row and "completed" in row and "3/3" in row

    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id} — completed" in shown.stdout
    for step_id, module in (("request", "start_module"), ("spanish", "translator"), ("french", "translator")):
        assert f"{step_id} ({module}) — completed" in shown.stdout, shown.stdout
    assert spanish in shown.stdout

    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == log

    assert missing.returncode != 0
    assert_no_traceback(missing)
    assert "no run 'nope'" in missing.stderr and "orchestrai logs" in missing.stderr

    assert narrow.returncode == 0 and narrow.stdout.strip(), narrow.stderr
    assert run_id in narrow.stdout, "piped `orchestrai logs` must not cut the run id"


# ---------------------------------------------------------------- 11-12. killed and interrupted runs


def _start_stuck_run(project: Path, fake_server: FakeLLMServer, pipeline: str) -> subprocess.Popen[str]:
    write(project / "stuck.yml", pipeline)
    fake_server.queue_reply("never delivered", latency_s=30, match=REVIEWER)
    proc = popen(project, "run", "stuck.yml", "--input", "request=Plan a bakery")
    wait_for(lambda: bool(requests_with(fake_server, REVIEWER)), proc)
    return proc


def test_sigkill_leaves_a_journal_that_logs_reads_as_interrupted(project: Path, fake_server: FakeLLMServer,
                                                                 server_config: Path, keys: dict[str, str]) -> None:
    fake_server.queue_reply("PLAN-FROM-THE-KILLED-RUN", match=PLANNER)
    proc = _start_stuck_run(project, fake_server, """
        name: killable
        pipeline:
          - {module: start_module, output_name: request}
          - {module: task_planner, inputs: [request], output_name: plan}
          - {module: scrutinizer, inputs: [request, plan], output_name: review}
        """)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL

    assert list((project / "logs").glob("*.json")) == []
    journal, = (project / "logs").glob("*.journal.jsonl")
    entries = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    assert [e["type"] for e in entries] == ["run", "step", "step"]
    assert [e["id"] for e in entries[1:]] == ["request", "plan"]
    assert all(e["status"] == "completed" for e in entries[1:])
    run_id = entries[0]["run_id"]

    listing, shown = cli_together(project, (["logs"], wide_env()), (["logs", "show", run_id], wide_env()))

    assert shown.returncode == 0, shown.stderr
    assert f"run {run_id} — interrupted" in shown.stdout
    assert "Plan a bakery" in shown.stdout and "PLAN-FROM-THE-KILLED-RUN" in shown.stdout
    assert listing.returncode == 0, listing.stderr
    row, = [line for line in listing.stdout.splitlines() if run_id in line]
    assert "killable" in row and "interrupted" in row
    assert "2/3" in row


def test_ctrl_c_writes_an_interrupted_log_and_exits_130(project: Path, fake_server: FakeLLMServer,
                                                       server_config: Path, keys: dict[str, str]) -> None:
    proc = _start_stuck_run(project, fake_server, CHAIN % "")
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=TIMEOUT_S)

    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Traceback" not in out
    assert "interrupted" in err
    log = only_log(project)
    assert log["status"] == "interrupted"
    steps = steps_by_id(log)
    assert [steps[s]["status"] for s in ("request", "plan", "review", "final")] == \
        ["completed", "completed", "interrupted", "skipped"]
    assert steps["plan"]["output"]
    assert steps["review"]["output"] is None and steps["review"]["error"]
    assert len(requests_with(fake_server, ENHANCER)) == 0
