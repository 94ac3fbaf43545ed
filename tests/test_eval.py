"""`orchestrai eval`: assertions, repeats past the cache, variants, reports (JUnit, JSON, HTML), exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, write
from fake_llm_server import FakeLLMServer
from typer.testing import CliRunner

from orchestrai.cli.commands import app
from orchestrai.evals.assertions import CheckContext, check
from orchestrai.evals.spec import AssertionSpec

ECHOER = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: echoer, inputs: [request], output_name: answer}
    """


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def echo_project(project: Path, server_config: Path, keys: dict[str, str]) -> Path:
    write(project / "system_prompts" / "echoer.md", "Repeat the request.\n")
    write(project / "pipelines" / "echoer.yml", ECHOER)
    return project


def ctx(value: Any, **extra: Any) -> CheckContext:
    return CheckContext(value, extra.pop("row", {"expected": "hola"}), extra.pop("cost", 0.001),
                        extra.pop("latency", 2.0), extra.pop("base", Path.cwd()), {})


CASES = [
    ("equals", "hola", "hola", "adios"),
    ("equals", "{{ expected }}", "hola", "Hola"),  # a test's value in the expected text
    ("contains", ["ho", "la"], "hola", "hoy"),
    ("icontains", "HOLA", "¡Hola!", "adios"),
    ("regex", r"^\d{3}$", "123", "12a"),
    ("is-json", None, '{"a": 1}', "{a: 1}"),
    ("is-json", None, {"a": 1}, "not json"),
    ("json-schema", {"type": "object", "required": ["a"]}, '```json\n{"a": 1}\n```', '{"b": 1}'),
    ("cost_usd_below", 0.01, 0.001, 0.5),
    ("latency_s_below", 5, 2.0, 9.0),
]


@pytest.mark.parametrize(("kind", "value", "good", "bad"), CASES)
def test_each_assertion_type_passes_and_fails(kind: str, value: Any, good: Any, bad: Any) -> None:
    spec = AssertionSpec(type=kind, value=value)

    def run(output: Any) -> Any:
        if kind == "cost_usd_below":
            return asyncio.run(check(spec, ctx("x", cost=output)))
        if kind == "latency_s_below":
            return asyncio.run(check(spec, ctx("x", latency=output)))
        return asyncio.run(check(spec, ctx(output)))

    passed, failed = run(good), run(bad)
    assert passed.passed and passed.score == 1.0
    assert not failed.passed and failed.score == 0.0 and failed.message.startswith(kind)


def test_cost_unknown_fails_cost_assertion() -> None:
    result = asyncio.run(check(AssertionSpec(type="cost_usd_below", value=1), ctx("x", cost=None)))
    assert not result.passed and "unknown" in result.message


def test_python_assertion_passes_fails_scores_and_raises(tmp_path: Path) -> None:
    write(tmp_path / "assertions" / "checks.py", """
        def short(output, context):
            return len(output) < 5, "too long"

        def scored(output, context):
            return {"pass": output == "yes", "score": 0.25, "reason": "scored it"}

        def broken(output, context):
            raise ValueError("no luck")
        """)

    def run(fn: str, output: str) -> Any:
        return asyncio.run(check(AssertionSpec(type="python", value=f"assertions/checks.py:{fn}"),
                                 ctx(output, base=tmp_path)))

    assert run("short", "abc").passed
    failed = run("short", "abcdefgh")
    assert not failed.passed and failed.message == "python assertions/checks.py:short: too long"
    scored = run("scored", "yes")
    assert scored.passed and scored.score == 0.25
    raised = run("broken", "x")
    assert not raised.passed and raised.message.endswith("raised ValueError: no luck")


def write_eval(project: Path, body: str, name: str = "check.yml") -> Path:
    return write(project / "evals" / name, body)


def test_eval_passes_fails_and_writes_junit_and_json(echo_project: Path) -> None:
    eval_file = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        tests:
          - {name: hello, vars: {request: hello}}
          - name: world
            vars: {request: world}
            assert: [{type: contains, value: "planet"}]
        assert:
          - {type: contains, value: "{{ request }}"}
          - {type: icontains, value: "REPLY TO", step: answer}
        variants:
          - {name: mini}
          - {name: big, model_config: {model: gpt-4o}, threshold: 0.5}
        """)
    junit = echo_project / "out" / "eval.xml"
    result = run_cli("eval", str(eval_file), "--junit", str(junit))
    assert result.exit_code == 1, result.output  # mini misses its threshold of 1.0
    assert "mini: 1/2 passed (50%), threshold 100%: missed" in result.output
    assert "big: 1/2 passed (50%), threshold 50%: met" in result.output
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "2", "0")
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert set(suites) == {"mini", "big"}
    for suite in suites.values():
        cases = {case.get("name"): case for case in suite.iter("testcase")}
        assert cases["hello"].find("failure") is None
        failure = cases["world"].find("failure")
        assert failure is not None and failure.get("message", "").startswith("contains 'planet': 'planet' not in")
    as_json = run_cli("eval", str(eval_file), "--json", "--variant", "big")
    data = json.loads(as_json.stdout)
    assert as_json.exit_code == 0 and data["ok"] and [v["name"] for v in data["variants"]] == ["big"]
    world = next(r for r in data["results"] if r["test"] == "world")
    assert world["runs"][0]["output"].startswith("reply to gpt-4o:")


def test_repeat_bypasses_the_cache(echo_project: Path, fake_server: FakeLLMServer) -> None:
    once = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        tests: [{vars: {request: hello}}]
        assert: [{type: contains, value: hello}]
        """, "once.yml")
    assert run_cli("eval", str(once)).exit_code == 0
    assert run_cli("eval", str(once)).exit_code == 0
    assert len(fake_server.requests) == 1  # the second eval was answered from the call cache
    repeated = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        repeat: 3
        tests: [{vars: {request: hello}}]
        assert: [{type: contains, value: hello}]
        """, "repeat.yml")
    result = run_cli("eval", str(repeated), "--json")
    assert result.exit_code == 0 and len(fake_server.requests) == 4
    assert len(json.loads(result.stdout)["results"][0]["runs"]) == 3


def test_repeat_pass_rate_counts_every_run(echo_project: Path, fake_server: FakeLLMServer) -> None:
    fake_server.queue_reply("hello")
    fake_server.queue_reply("nothing")
    eval_file = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        repeat: 2
        concurrency: 1
        tests: [{vars: {request: hi}}]
        assert: [{type: equals, value: hello}]
        """)
    result = run_cli("eval", str(eval_file), "--junit", "eval.xml")
    assert result.exit_code == 1 and "FAIL 1/2" in result.output  # pass^2: one failing run fails the test
    failure = ET.parse("eval.xml").getroot().find(".//failure")
    assert failure is not None and failure.get("message") == "run 2: equals 'hello': got 'nothing'"


def test_llm_rubric_records_the_verdict_and_an_unparsable_answer_is_one_line(echo_project: Path,
                                                                             fake_server: FakeLLMServer) -> None:
    fake_server.queue_reply('{"pass": true, "score": 0.9, "reason": "polite"}', match="## rubric\nBe polite")
    fake_server.queue_reply('{"pass": false, "score": 0.2, "reason": "rude"}', match="## rubric\nBe rude")
    fake_server.queue_reply("I think it is fine", match="## rubric\nBe brief")
    eval_file = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        tests: [{vars: {request: hello}}]
        assert:
          - {type: llm-rubric, rubric: Be polite}
          - {type: llm-rubric, rubric: Be rude}
          - {type: llm-rubric, rubric: Be brief}
        """)
    result = run_cli("eval", str(eval_file), "--json")
    assert result.exit_code == 1
    polite, rude, brief = json.loads(result.stdout)["results"][0]["runs"][0]["assertions"]
    assert polite["passed"] and polite["score"] == 0.9 and polite["details"]["reason"] == "polite"
    assert not rude["passed"] and rude["details"] | {"judge_cost_usd": 0} == {
        "verdict": False, "score": 0.2, "reason": "rude", "judge_cost_usd": 0}
    assert not brief["passed"]
    assert brief["message"] == ("llm-rubric: the judge's answer is not a verdict {pass, score, reason}: "
                                "'I think it is fine'")


def test_bad_rows_fail_alone_with_their_line(echo_project: Path) -> None:
    write(echo_project / "evals" / "rows.jsonl", '{"q": "one"}\n{"q": \n{"other": "x"}\n{"q": "four"}\n')
    eval_file = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        data: rows.jsonl
        vars: {request: q}
        assert: [{type: contains, value: "{{ q }}"}]
        threshold: 0.5
        """)
    result = run_cli("eval", str(eval_file), "--json")
    assert result.exit_code == 0, result.output
    runs = {r["test"]: r["runs"][0] for r in json.loads(result.stdout)["results"]}
    assert runs["line 1"]["passed"] and runs["line 4"]["passed"]
    assert runs["line 2"]["error"].startswith("evals/rows.jsonl:2: not valid JSON")
    assert runs["line 3"]["error"] == "evals/rows.jsonl:3: the row has no column 'q' (mapped by vars:)"


def test_csv_data_and_a_missing_run_input(echo_project: Path) -> None:
    write(echo_project / "evals" / "rows.csv", "name,request\nfirst,alpha\nsecond,beta\n")
    eval_file = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        data: rows.csv
        tests: [{name: empty, vars: {other: x}}]
        assert: [{type: contains, value: "{{ request }}"}]
        """)
    result = run_cli("eval", str(eval_file), "--json")
    runs = {r["test"]: r["runs"][0] for r in json.loads(result.stdout)["results"]}
    assert result.exit_code == 1 and runs["first"]["passed"] and runs["second"]["passed"]
    assert runs["empty"]["error"] == "the pipeline needs run input(s) 'request'"


BROKEN = [
    ("tests: [{vars: {request: x}}]\nassert: [{type: containz, value: x}]\n", 3,
     "unknown assertion type 'containz'"),
    ("tests: [{vars: {request: x}}]\nrepeats: 2\n", 3, "unknown key 'repeats'"),
    ("tests: [{vars: {request: x}}]\nvariants:\n  - name: a\n    prompts: {echoer: nope.md}\n", 5,
     "variant 'a': prompt file 'nope.md' not found"),
    ("tests: [{vars: {request: x}}]\nvariants:\n  - name: a\n    model_config: {provider: nowhere}\n", 5,
     "variant 'a': step 'answer': unknown provider 'nowhere'"),
    ("tests: [{vars: {request: x}}]\nassert:\n  - {type: contains, value: x, step: nosuch}\n", 4,
     "variant 'default': the pipeline has no step or output 'nosuch'"),
    ("tests: [{vars: {request: x}}]\nassert:\n  - type: python\n    value: checks.py:fn\n", 5,
     "assertion 'python': ValueError:"),
    ("tests: [{vars: {request: x}}]\nassert:\n  - {type: llm-rubric}\n", 4, "assertion 'llm-rubric' needs `rubric:`"),
    ("tests: [{vars: {request: x}}]\nassert:\n  - {type: llm-rubric, rubric: r, judge: {provider: nowhere}}\n", 4,
     "llm-rubric judge: unknown provider 'nowhere'"),
    ("tests: [{vars: {request: x}}]\nvariants:\n  - name: a\n    prompts: {translator: {text: x}}\n", 5,
     "variant 'a': no step of"),
    ("data: nowhere.jsonl\n", 2, "data file 'nowhere.jsonl' not found"),
]


@pytest.mark.parametrize(("tail", "line", "message"), BROKEN)
def test_broken_eval_files_exit_2_with_path_and_line(echo_project: Path, tail: str, line: int, message: str) -> None:
    eval_file = write(echo_project / "evals" / "broken.yml", "pipeline: ../pipelines/echoer.yml\n" + tail)
    for command in ("eval", "validate"):
        result = run_cli(command, str(eval_file))
        assert result.exit_code == 2, result.output
        assert f"broken.yml:{line}: {message}" in " ".join(result.output.split()), result.output


def test_validate_accepts_eval_files_beside_pipelines(echo_project: Path) -> None:
    eval_file = write_eval(echo_project, "pipeline: ../pipelines/echoer.yml\ntests: [{vars: {request: x}}]\n")
    result = run_cli("validate", str(eval_file), "pipelines/echoer.yml")
    assert result.exit_code == 0, result.output
    assert "check.yml: valid — eval: 1 variant(s) x 1 test(s)" in result.output
    assert "echoer.yml: valid — 2 steps" in result.output


def test_shipped_example_passes_on_echo(project: Path) -> None:
    shutil.copytree(REPO / "evals", project / "evals")
    result = run_cli("eval", "evals/translation.yml", "--variant", "literal/echo", "--variant", "natural/echo",
                     "--junit", "eval.xml")
    assert result.exit_code == 0, result.output
    root = ET.parse("eval.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "0", "0")
    assert run_cli("validate", "evals/translation.yml").exit_code == 0


class _Cells(HTMLParser):
    """The results table's cells as Chromium serialized them: (test, variant, class) per <td>."""

    def __init__(self) -> None:
        super().__init__()
        self.in_results, self.test = False, None
        self.cells: list[tuple[str | None, str | None, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self.in_results = found.get("id") == "results"
        elif self.in_results and tag == "tr" and "data-test" in found:
            self.test = found["data-test"]
        elif self.in_results and tag == "td":
            self.cells.append((self.test, found.get("data-variant"), found.get("class")))
        elif self.in_results and tag == "li" and found.get("class") == "failed-assertion":
            test, variant, state = self.cells[-1]
            self.cells[-1] = (test, variant, f"{state} highlighted")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_report_renders_in_headless_chromium(echo_project: Path, tmp_path: Path) -> None:
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (CI installs it: .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    eval_file = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        tests:
          - {name: "<b>hello</b>", vars: {request: hello}}
          - {name: world, vars: {request: world}, assert: [{type: contains, value: planet}]}
        variants: [{name: mini}, {name: big, model_config: {model: gpt-4o}}]
        """)
    report = tmp_path / "report.html"
    assert run_cli("eval", str(eval_file), "-o", str(report)).exit_code == 1
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    cells = _Cells()
    cells.feed(dom)
    assert sorted(cells.cells) == sorted([
        ("<b>hello</b>", "mini", "pass"), ("<b>hello</b>", "big", "pass"),
        ("world", "mini", "fail highlighted"), ("world", "big", "fail highlighted")])
    assert "<b>hello</b>" not in dom.split("<body>")[1].split("</h1>")[1]  # a test's name is text, not markup
    assert "<del>gpt-4o-mini:</del><ins>gpt-4o:</ins>" in dom  # big's diff against mini


def test_runs_are_bounded_by_concurrency_and_pipelines_compare(echo_project: Path, fake_server: FakeLLMServer) -> None:
    write(echo_project / "system_prompts" / "shouter.md", "Shout the request.\n")
    write(echo_project / "pipelines" / "shouter.yml", ECHOER.replace("echoer", "shouter"))
    fake_server.latency_s = 0.05
    eval_file = write_eval(echo_project, """
        pipelines: [../pipelines/echoer.yml, ../pipelines/shouter.yml]
        concurrency: 2
        tests: [{vars: {request: a}}, {vars: {request: b}}, {vars: {request: c}}, {vars: {request: d}}]
        assert: [{type: regex, value: "^reply to"}]
        """)
    result = run_cli("eval", str(eval_file), "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and [v["name"] for v in data["variants"]] == ["echoer", "shouter"]
    assert len(fake_server.requests) == 8 and fake_server.max_in_flight <= 2
    systems = {(r.system or "").strip() for r in fake_server.requests}
    assert systems == {"Repeat the request.", "Shout the request."}


def test_a_run_that_cannot_finish_is_a_junit_error_and_an_unknown_variant_exits_2(echo_project: Path) -> None:
    eval_file = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        tests: [{name: ok, vars: {request: x}}, {name: no-input, vars: {other: x}}]
        """)
    assert run_cli("eval", str(eval_file), "--junit", "eval.xml").exit_code == 1
    root = ET.parse("eval.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "0", "1")
    error = root.find(".//testcase[@name='no-input']/error")
    assert error is not None and error.get("message") == "the pipeline needs run input(s) 'request'"
    unknown = run_cli("eval", str(eval_file), "--variant", "nope")
    assert unknown.exit_code == 2 and "no variant named 'nope'" in unknown.output


def test_prompt_variants_send_their_own_text_and_leave_the_project_prompt(echo_project: Path,
                                                                          fake_server: FakeLLMServer) -> None:
    write(echo_project / "evals" / "prompts" / "loud.md", "Repeat the request, loudly.\n")
    eval_file = write_eval(echo_project, """
        pipeline: ../pipelines/echoer.yml
        tests: [{vars: {request: hi}}]
        variants:
          - {name: file, prompts: {echoer: prompts/loud.md}}
          - {name: inline, prompts: {echoer: {text: "Repeat it in French."}}, model_config: {model: gpt-4o}}
          - {name: project}
        """)
    assert run_cli("eval", str(eval_file)).exit_code == 0
    sent = {((r.system or "").strip(), r.model) for r in fake_server.requests}
    assert sent == {("Repeat the request, loudly.", "gpt-4o-mini"), ("Repeat it in French.", "gpt-4o"),
                    ("Repeat the request.", "gpt-4o-mini")}
    assert (echo_project / "system_prompts" / "echoer.md").read_text() == "Repeat the request.\n"
