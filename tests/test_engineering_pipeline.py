"""The engineering pipeline end to end against the scripted OpenAI-compatible server on 127.0.0.1.

The server answers each step by a phrase only that step's system prompt holds. The generated programs
really run (in each workspace's venv), and their real output is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import run_library

REQUEST = "a command-line tool that converts Celsius to Fahrenheit"
PLANNER, ENGINEER = "You are the code planner", "You are the engineer"
DEBUGGER, REVIEWER = "You are the debugger", "You are the reviewer"
MODIFIER, WRITER = "You are the maintainer", "You are the technical writer"

PLAN = """Entry point: main.py
Run: python main.py 100
Dependencies: none

## Files
- main.py — reads the temperature argument and prints the conversion
- converter.py — c_to_f(), the formula
"""
CONVERTER = '''def c_to_f(celsius: float) -> float:
    """Celsius to Fahrenheit."""
    return celsius * 9 / 5 + 32
'''
MAIN = '''import sys

from converter import c_to_f


def main(argv: list[str]) -> int:
    celsius = float(argv[1]) if len(argv) > 1 else 0.0
    print(f"{celsius} C = {c_to_f(%s)} F")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''
GOOD_MAIN, BUGGY_MAIN, STILL_BUGGY_MAIN = MAIN % "celsius", MAIN % "celcius", MAIN % "temperature"
KELVIN_MAIN = GOOD_MAIN.replace('    return 0\n', '    print(f"{celsius} C = {celsius + 273.15} K")\n    return 0\n')
README = "# Celsius to Fahrenheit\n\nConverts a temperature.\n\n```bash\npython main.py 100\n```\n"


def files_answer(*files: tuple[str, str], prose: str = "Here is the code.") -> str:
    return prose + "\n\n" + "\n".join(f"File: {path}\n```python\n{text}```\n" for path, text in files)


def script(server: FakeLLMServer, *, engineer: str, fixes: list[str] = (), review: str | None = None,
           modify: str | None = None) -> None:
    server.queue_reply(PLAN, match=PLANNER)
    server.queue_reply(engineer, match=ENGINEER)
    for fix in fixes:
        server.queue_reply(fix, match=DEBUGGER)
    if review is not None:
        server.queue_reply(review, match=REVIEWER)
    if modify is not None:
        server.queue_reply(modify, match=MODIFIER)
    server.queue_reply(README, match=WRITER)


def requests_for(server: FakeLLMServer, phrase: str) -> list[Any]:
    return [r for r in server.requests if r.api and phrase in (r.system or "")]


def records(result: Any) -> dict[str, Any]:
    return {r.id: r for r in result.records}


def run_main(workspace: Path, *args: str) -> str:
    return subprocess.run([sys.executable, "main.py", *args], cwd=workspace, capture_output=True, text=True,
                          timeout=30, check=True).stdout


@pytest.fixture
def engineering(project: Path, fake_server: FakeLLMServer, server_config: Path, keys: dict[str, str]) -> FakeLLMServer:
    """A project whose config points at the scripted server, with fake keys."""
    return fake_server


def test_a_name_error_is_fixed_in_two_iterations_and_the_program_really_works(engineering: FakeLLMServer,
                                                                             project: Path) -> None:
    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", BUGGY_MAIN)),
           fixes=[files_answer(("main.py", GOOD_MAIN), prose="`celcius` was a typo for `celsius`.")])
    result, memory_log = run_library("pipelines/engineering.yml", inputs={"request": REQUEST}, allow_execution=True)
    steps = records(result)
    assert result.status == "completed", {r.id: r.error for r in result.records}
    workspace = Path(steps["code"].output["workspace"])
    assert workspace == project / "generated_code" / result.run_id
    assert steps["code"].output["files"] == ["converter.py", "main.py"] and steps["code"].output["args"] == ["100"]
    debugger = steps["working_codebase"].details
    assert debugger["outcome"] == "fixed" and steps["working_codebase"].output["outcome"] == "fixed"
    first, second = debugger["iterations"]
    assert first["command"] == "python main.py 100" and first["exit_code"] == 1
    assert "NameError: name 'celcius' is not defined" in first["output_tail"]
    assert first["files_changed"] == ["main.py"] and first["tokens"]["output"] > 0
    assert second["exit_code"] == 0 and "100.0 C = 212.0 F" in second["output_tail"]
    [fix_request] = requests_for(engineering, DEBUGGER)
    assert "NameError" in fix_request.last_user_text and "### main.py" in fix_request.last_user_text
    assert fix_request.body["temperature"] == 0.7  # the step's model_config
    assert run_main(workspace, "100") == "100.0 C = 212.0 F\n"
    assert (workspace / "README.md").read_text() == README
    assert steps["modified_codebase"].details["outcome"] == "unchanged"  # no change was requested
    logged = {s["id"]: s for s in json.loads(memory_log.path.read_text())["steps"]}
    assert [i["exit_code"] for i in logged["working_codebase"]["details"]["iterations"]] == [1, 0]


def test_a_bug_never_fixed_gives_up_at_max_iterations_and_keeps_the_workspace(engineering: FakeLLMServer,
                                                                              project: Path) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: code_planner, inputs: [request], output_name: code_plan}
          - {module: engineer, inputs: [request, code_plan], output_name: code}
          - {module: debugger, inputs: [request, code], output_name: working,
             options: {max_iterations: 4, fallback_model: gpt-4o, fallback_after: 2}}
          - {module: create_readme, inputs: [working], output_name: readme}
        """)
    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", BUGGY_MAIN)),
           fixes=[files_answer(("main.py", STILL_BUGGY_MAIN))] * 3)
    result, _ = run_library("p.yml", inputs={"request": REQUEST}, allow_execution=True)
    steps = records(result)
    working = steps["working"]
    assert result.status == "failed" and working.status == "failed" and steps["readme"].status == "skipped"
    workspace = Path(steps["code"].output["workspace"])
    assert working.error.splitlines()[0] == ("step 'working' gave up after 4 iterations: the code still fails "
                                             f"(`python main.py 100` exited 1); the workspace is kept for inspection: "
                                             f"{workspace}")
    assert working.details["outcome"] == "gave_up"
    iterations = working.details["iterations"]
    assert [i["exit_code"] for i in iterations] == [1, 1, 1, 1]
    assert [i["files_changed"] for i in iterations] == [["main.py"], [], [], []]
    assert "NameError: name 'temperature'" in iterations[3]["output_tail"]
    fix_requests = requests_for(engineering, DEBUGGER)
    assert len(fix_requests) == 3  # none after the last run: its fix could not be checked
    assert "your answer changed no file" in fix_requests[2].last_user_text
    assert [r.model for r in fix_requests] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o"]  # fallback after 2 failed fixes
    assert [i.get("model") for i in iterations] == ["gpt-4o-mini", "gpt-4o-mini", "gpt-4o", None]
    assert (workspace / "main.py").read_text() == STILL_BUGGY_MAIN


ENGINEER_ONLY = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: engineer, inputs: [request], output_name: code}
    """


def test_hostile_paths_in_the_engineers_answer_are_refused_and_reported(engineering: FakeLLMServer,
                                                                      project: Path, tmp_path: Path) -> None:
    target = tmp_path / "absolute_escape.py"
    write(project / "p.yml", ENGINEER_ONLY)
    engineering.queue_reply(files_answer(("../escape.py", "X = 1\n"), (str(target), "X = 2\n"), ("main.py", GOOD_MAIN)),
                            match=ENGINEER)
    result, _ = run_library("p.yml", inputs={"request": REQUEST})
    code = records(result)["code"]
    assert result.status == "completed" and code.output["files"] == ["main.py"]
    assert code.details["refused"] == [
        "../escape.py: it contains '..'; paths must stay inside the workspace",
        f"{target}: it is an absolute path; paths must be relative to the workspace"]
    workspace = Path(code.output["workspace"])
    assert not (workspace.parent / "escape.py").exists() and not target.exists()


def test_an_answer_with_nothing_writable_is_asked_again_then_fails_with_the_reason(engineering: FakeLLMServer,
                                                                                  project: Path) -> None:
    write(project / "p.yml", ENGINEER_ONLY)
    hostile = files_answer(("../../escape.py", "X = 1\n"))
    engineering.queue_reply(hostile, match=ENGINEER)
    engineering.queue_reply(hostile, match=ENGINEER)
    result, _ = run_library("p.yml", inputs={"request": REQUEST})
    code = records(result)["code"]
    assert code.status == "failed"
    assert code.error.splitlines()[0] == ("step 'code': no file could be written from the model's answer: "
                                          "../../escape.py: it contains '..'; paths must stay inside the workspace")
    second = requests_for(engineering, ENGINEER)[1]
    assert "No file could be written from your answer" in second.last_user_text and code.details["answers"] == 2
    assert list(project.rglob("escape.py")) == []


def test_a_chosen_workspace_holding_someone_elses_files_is_refused_before_any_call(engineering: FakeLLMServer,
                                                                                project: Path) -> None:
    write(project / "p.yml", ENGINEER_ONLY)
    mine = write(project / "my_project" / "main.py", "# my own work\n")
    result, _ = run_library("p.yml", inputs={"request": REQUEST}, workspace=project / "my_project")
    code = records(result)["code"]
    assert code.status == "failed" and "already holds files that orchestrai did not write" in code.error
    assert mine.read_text() == "# my own work\n" and requests_for(engineering, ENGINEER) == []


def test_modify_codebase_changes_one_file_and_the_debugger_confirms_it_runs(engineering: FakeLLMServer) -> None:
    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", GOOD_MAIN)),
           modify=files_answer(("main.py", KELVIN_MAIN), prose="main.py now also prints Kelvin."))
    result, _ = run_library("pipelines/engineering.yml", allow_execution=True,
                            inputs={"request": REQUEST, "change": "Also print the temperature in Kelvin."})
    steps = records(result)
    assert result.status == "completed", {r.id: r.error for r in result.records}
    workspace = Path(steps["code"].output["workspace"])
    assert steps["working_codebase"].details["outcome"] == "fixed"
    assert len(steps["working_codebase"].details["iterations"]) == 1  # it ran the first time: no fix asked
    modified = steps["modified_codebase"]
    assert modified.details["changed"] == ["main.py"] and modified.output["changed"] == ["main.py"]
    [check] = modified.details["iterations"]
    assert check["exit_code"] == 0 and "100.0 C = 373.15 K" in check["output_tail"]
    [request] = requests_for(engineering, MODIFIER)
    assert "Also print the temperature in Kelvin." in request.last_user_text
    assert "### converter.py" in request.last_user_text
    assert (workspace / "converter.py").read_text() == CONVERTER
    assert run_main(workspace, "100") == "100.0 C = 212.0 F\n100.0 C = 373.15 K\n"


def test_without_a_terminal_or_consent_the_run_is_refused_before_any_call(engineering: FakeLLMServer) -> None:
    from orchestrai.errors import OrchestraiError

    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", GOOD_MAIN)))
    with pytest.raises(OrchestraiError) as caught:
        run_library("pipelines/engineering.yml", inputs={"request": REQUEST})  # no confirm, no --yes
    message = str(caught.value).splitlines()[0]
    assert "step 'working_codebase' would run generated code and nobody is here to allow it" in message
    assert "pass --yes or set allow_execution: true in config.yml (or --no-exec to run nothing)" in message
    assert engineering.requests == [], "nothing may be spent on a run that cannot finish"


def test_consent_is_asked_once_per_run_showing_command_and_workspace(engineering: FakeLLMServer) -> None:
    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", GOOD_MAIN)),
           modify=files_answer(("main.py", KELVIN_MAIN)))
    questions: list[str] = []
    result, _ = run_library("pipelines/engineering.yml", inputs={"request": REQUEST, "change": "Kelvin too"},
                            confirm=lambda question: questions.append(question) or True)
    assert result.status == "completed"
    workspace = records(result)["code"].output["workspace"]
    [question] = questions  # the debugger asked; modify_codebase ran under the same answer
    assert "`python main.py 100`" in question and Path(workspace).name in question


def test_declining_consent_fails_the_step_and_keeps_the_code(engineering: FakeLLMServer) -> None:
    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", GOOD_MAIN)))
    result, _ = run_library("pipelines/engineering.yml", inputs={"request": REQUEST}, confirm=lambda question: False)
    working = records(result)["working_codebase"]
    assert working.status == "failed" and "you did not allow running generated code" in working.error
    assert (Path(records(result)["code"].output["workspace"]) / "main.py").read_text() == GOOD_MAIN


def test_no_exec_reviews_and_modifies_without_executing_anything(engineering: FakeLLMServer) -> None:
    leaves_a_trace = "from pathlib import Path\nPath('ran.txt').write_text('executed')\n" + GOOD_MAIN
    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", leaves_a_trace)),
           review="No changes needed.", modify=files_answer(("main.py", leaves_a_trace + "# Kelvin\n")))
    result, _ = run_library("pipelines/engineering.yml", no_exec=True, inputs={"request": REQUEST, "change": "Kelvin"})
    steps = records(result)
    assert result.status == "completed", {r.id: r.error for r in result.records}
    workspace = Path(steps["code"].output["workspace"])
    assert steps["working_codebase"].details["outcome"] == "reviewed"
    assert "iterations" not in steps["working_codebase"].details
    assert steps["modified_codebase"].details["outcome"] == "not_run"
    assert (workspace / "main.py").read_text().endswith("# Kelvin\n")
    assert not (workspace / "ran.txt").exists() and not (workspace / ".venv").exists()
    assert len(requests_for(engineering, REVIEWER)) == 1 and requests_for(engineering, DEBUGGER) == []
    assert (workspace / "README.md").is_file()


def test_the_generated_program_sees_no_key_from_config_or_environment(engineering: FakeLLMServer, project: Path,
                                                                      keys: dict[str, str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-ambient-0123456789abcdef")
    dumper = "import json, os\nfrom pathlib import Path\nPath('env.json').write_text(json.dumps(dict(os.environ)))\n"
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: engineer, inputs: [request], output_name: code}
          - {module: debugger, inputs: [request, code], output_name: working}
        """)
    engineering.queue_reply(files_answer(("main.py", dumper)), match=ENGINEER)
    result, _ = run_library("p.yml", inputs={"request": "dump the environment"}, allow_execution=True)
    assert result.status == "completed", {r.id: r.error for r in result.records}
    text = (Path(records(result)["code"].output["workspace"]) / "env.json").read_text()
    for secret in [*keys.values(), "sk-test-ambient-0123456789abcdef"]:
        assert secret not in text
    assert "OPENAI_API_KEY" not in json.loads(text)


# ------------------------------------------------------------------ the command line, as in the "Done when"


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrai", "run", "pipelines/engineering.yml",
                           "--input", f"request={REQUEST}", *args], cwd=project, env=dict(os.environ),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def only_log(project: Path) -> dict[str, Any]:
    [path] = (project / "logs").glob("*.json")
    return json.loads(path.read_text())


def test_done_when_the_cli_run_with_yes_ends_with_working_code_a_readme_and_logged_iterations(
        engineering: FakeLLMServer, project: Path) -> None:
    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", BUGGY_MAIN)),
           fixes=[files_answer(("main.py", GOOD_MAIN))])
    proc = cli(project, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    log = only_log(project)
    steps = {s["id"]: s for s in log["steps"]}
    workspace = project / "generated_code" / log["run_id"]
    assert json.loads(proc.stdout)["workspace"] == str(workspace)  # the final output: the documented codebase
    iterations = steps["working_codebase"]["details"]["iterations"]
    assert [(i["command"], i["exit_code"], i["files_changed"]) for i in iterations] == [
        ("python main.py 100", 1, ["main.py"]), ("python main.py 100", 0, [])]
    assert all({"output_tail", "tokens"} <= set(i) for i in iterations) and iterations[0]["tokens"]["input"] > 0
    assert steps["working_codebase"]["details"]["outcome"] == "fixed"
    assert run_main(workspace, "37") == "37.0 C = 98.6 F\n"
    assert (workspace / "README.md").read_text() == README


def test_the_cli_without_yes_and_without_a_terminal_fails_fast_saying_how_to_allow_it(
        engineering: FakeLLMServer, project: Path) -> None:
    script(engineering, engineer=files_answer(("converter.py", CONVERTER), ("main.py", GOOD_MAIN)))
    proc = cli(project)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "nobody is here to allow it: pass --yes or set allow_execution: true in config.yml" in proc.stderr
    assert engineering.requests == [] and not (project / "generated_code").exists()
