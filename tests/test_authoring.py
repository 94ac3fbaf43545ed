"""The prompt-authoring loop: `run --from-run RUN --only STEP` and `run --watch`, at the loopback server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write
from fake_llm_server import FakeLLMServer
from rich.console import Console

from orchestrai.cli.runcmd import RunRequest, run_command
from orchestrai.cli.watchcmd import watch_command, watched_files
from orchestrai.errors import InputError
from orchestrai.project import Project

CHAIN = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: task_planner, inputs: [request], output_name: plan}
      - {module: scrutinizer, inputs: [request, plan], output_name: review}
      - {module: enhancer, inputs: [request, review], output_name: better}
    """


def chats(server: FakeLLMServer) -> list:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def only_log(project: Path) -> dict:
    (path,) = (project / "logs").glob("*.json")
    return json.loads(path.read_text())


def first_run(project: Path, fake_server: FakeLLMServer) -> str:
    write(project / "chain.yml", CHAIN)
    assert run_command(RunRequest(pipeline=Path("chain.yml"), inputs=["request=Bake bread"], quiet=True)) == 0
    assert len(chats(fake_server)) == 3
    return str(only_log(project)["run_id"])


def test_only_reruns_one_step_with_the_stored_inputs(project: Path, server_config: Path, keys: dict,
                                                     fake_server: FakeLLMServer) -> None:
    run_id = first_run(project, fake_server)
    stored_plan = next(s["output"] for s in only_log(project)["steps"] if s["id"] == "plan")
    prompts = project / "system_prompts"
    (prompts / "scrutinizer.md").write_text((prompts / "scrutinizer.md").read_text() + "\nBe brief.\n")
    (prompts / "task_planner.md").write_text("An edited planner: it must not run.\n")  # upstream: taken from the log
    fake_server.reset()
    code = run_command(RunRequest(pipeline=Path("chain.yml"), from_run=run_id, only="review", quiet=True))
    assert code == 0
    (request,) = chats(fake_server)  # exactly one call: the step's own
    assert "Be brief." in (request.system or "")
    assert stored_plan in request.messages[-1]["content"]


def test_only_accepts_an_output_name_and_a_log_path(project: Path, server_config: Path, keys: dict,
                                                    fake_server: FakeLLMServer) -> None:
    first_run(project, fake_server)
    (log_path,) = (project / "logs").glob("*.json")
    fake_server.reset()
    done = subprocess.run([sys.executable, "-m", "orchestrai", "run", "--from-run", str(log_path), "--only", "plan",
                           "--no-cache", "--json"], cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [s["id"] for s in summary["steps"]] == ["request", "plan"]  # the steps after it are left out
    assert len(chats(fake_server)) == 1


def test_only_mistakes_are_one_line_each(project: Path, server_config: Path, keys: dict,
                                         fake_server: FakeLLMServer) -> None:
    run_id = first_run(project, fake_server)
    with pytest.raises(InputError, match="--only and --from-run go together"):
        run_command(RunRequest(pipeline=Path("chain.yml"), only="review"))
    with pytest.raises(InputError, match="no such step") as caught:
        run_command(RunRequest(pipeline=Path("chain.yml"), from_run=run_id, only="nope"))
    assert "request, plan, review, better" in str(caught.value.hint)
    done = subprocess.run([sys.executable, "-m", "orchestrai", "run", "chain.yml", "--from-run", "feedbeef",
                           "--only", "review"], cwd=project, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no run 'feedbeef'" in done.stderr and "Traceback" not in done.stderr


class Editor:
    """The `sleep` of the watch loop: the first wait of each round saves the next edit."""

    def __init__(self, edits: list) -> None:
        self.edits, self.waits = edits, 0

    def __call__(self, seconds: float) -> None:
        self.waits += 1
        if self.edits:
            self.edits.pop(0)()


def test_watch_reruns_only_what_changed_and_shows_the_change(project: Path, server_config: Path, keys: dict,
                                                             fake_server: FakeLLMServer) -> None:
    write(project / "chain.yml", CHAIN)
    enhancer = project / "system_prompts" / "enhancer.md"
    counts: list[int] = []

    def edit_prompt() -> None:
        counts.append(len(chats(fake_server)))
        fake_server.queue_reply("A BRIEF ANSWER", match="Be brief.")
        enhancer.write_text(enhancer.read_text() + "\nBe brief.\n")

    def edit_pipeline() -> None:  # new settings for review; its output stays the same, so better is reused
        counts.append(len(chats(fake_server)))
        write(project / "chain.yml", CHAIN.replace("output_name: review}",
                                                   "output_name: review, model_config: {temperature: 0.9}}"))

    out = io.StringIO()
    code = watch_command(RunRequest(pipeline=Path("chain.yml"), inputs=["request=Bake bread"], quiet=True),
                         sleep=Editor([edit_prompt, edit_pipeline]), runs=3, console=Console(file=out, width=200))
    counts.append(len(chats(fake_server)))
    assert code == 0
    assert counts == [3, 4, 5]  # all three steps, then one step per save
    text = out.getvalue()
    assert "ran again: better; outputs changed: better" in text
    assert "+A BRIEF ANSWER" in text
    assert "ran again: review; outputs changed: none" in text


def test_watch_keeps_going_after_a_broken_save(project: Path, server_config: Path, keys: dict,
                                               fake_server: FakeLLMServer) -> None:
    write(project / "chain.yml", CHAIN)

    def break_it() -> None:
        (project / "chain.yml").write_text("pipeline:\n  - {module: start_module, output_name: request\n")

    out = io.StringIO()
    code = watch_command(RunRequest(pipeline=Path("chain.yml"), inputs=["request=R"], quiet=True),
                         sleep=Editor([break_it]), runs=2, console=Console(file=out, width=200))
    assert code == 2
    assert "chain.yml:" in out.getvalue()  # the problem, with its path:line, and no traceback


def test_watched_files_are_the_pipeline_config_prompts_and_schemas(project: Path, server_config: Path) -> None:
    write(project / "schemas" / "review.json", '{"type": "object", "properties": {"ok": {"type": "boolean"}}}')
    write(project / "chain.yml", CHAIN.replace("output_name: review}",
                                               "output_name: review, output_schema: schemas/review.json}"))
    proj = Project.open(server_config)
    files = {p.relative_to(project.resolve()).as_posix() for p in watched_files(proj, proj.load("chain.yml"))}
    assert files == {"chain.yml", "config.yml", "schemas/review.json", "system_prompts/task_planner.md",
                     "system_prompts/scrutinizer.md", "system_prompts/enhancer.md"}
