"""Pipelines that decide, run over the loopback server: foreach, join, when, loops, sub-pipelines, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import write
from fake_llm_server import FakeLLMServer
from helpers import kill_then_resume, run_library

TOPICS = ["topic-A", "topic-B", "topic-C", "topic-D", "topic-E", "topic-F"]
PLAN_SCHEMA = ("{type: object, properties: {topics: {type: array, items: {type: string}}}, required: [topics], "
               "additionalProperties: false}")


def prompts(project: Path) -> None:
    write(project / "system_prompts" / "planner.md", "You are a planner. List topics for {{ request }}.\n")
    write(project / "system_prompts" / "researcher.md", "You are a researcher. Research {{ topic }} in depth.\n")
    write(project / "system_prompts" / "synth.md", "You are a synthesizer. Combine the findings.\n")
    write(project / "system_prompts" / "classifier.md", "You are a classifier. Classify the request.\n")
    write(project / "system_prompts" / "tech.md", "You are a technical writer.\n")
    write(project / "system_prompts" / "general.md", "You are a general writer.\n")
    write(project / "system_prompts" / "merge.md", "You are an editor. Merge what you get.\n")
    write(project / "system_prompts" / "writer.md", "You are a writer. Write a draft.\n")
    write(project / "system_prompts" / "critic.md", "You are a critic. Score the draft from 1 to 10.\n")


def fanout_pipeline(project: Path, extra: str = "max_concurrency: 2", *, aside: bool = True,
                    synth: bool = True) -> Path:
    """A planner and a fan-out of researchers; (`synth`) a synthesizer of their findings; and (`aside`)
    an independent step beside them."""
    prompts(project)
    after = "\n          - {module: synth, inputs: [findings], output_name: report}" if synth else ""
    after += "\n          - {module: writer, inputs: [request], output_name: aside}" if aside else ""
    return write(project / "fan.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {{module: planner, inputs: [request], output_name: plan, output_schema: {PLAN_SCHEMA}}}
          - {{module: researcher, foreach: plan.topics, as: topic, {extra}, output_name: findings}}{after}
        """)


def queue_plan(server: FakeLLMServer, topics: list[str]) -> None:
    server.queue_reply(json.dumps({"topics": topics}), match="You are a planner")


def requests_with(server: FakeLLMServer, text: str) -> list[Any]:
    return [r for r in server.requests if r.api is not None and text in json.dumps(r.body)]


def test_fanout_respects_max_concurrency_and_keeps_item_order(project: Path, server_config: Path, keys: dict,
                                                              fake_server: FakeLLMServer) -> None:
    path = fanout_pipeline(project, aside=False)  # only the items can be in flight together
    queue_plan(fake_server, TOPICS)
    for topic in reversed(TOPICS):  # later items answer sooner: the output must still be in item order
        fake_server.queue_reply(f"found {topic}", match=f"Research {topic}", latency_s=0.05 * (7 - TOPICS.index(topic)))
    result, log = run_library(path, inputs={"request": "R"}, use_cache=False)
    assert result.status == "completed"
    assert result.outputs["findings"] == [f"found {topic}" for topic in TOPICS]
    starts = sorted(requests_with(fake_server, "You are a researcher"), key=lambda r: r.received_at)
    assert len(starts) == 6
    assert fake_server.max_in_flight == 2  # the step's max_concurrency, reached and never passed
    records = {r.id: r for r in result.records}
    assert records["findings"].details["items"] == 6 and records["findings[5]"].parent == "findings"
    assert records["findings[0]"].inputs == {"topic": "topic-A"}
    logged = json.loads(Path(log.path).read_text())
    assert [s["id"] for s in logged["steps"]][2:9] == ["findings", *(f"findings[{n}]" for n in range(6))]


def test_peak_in_flight_at_the_server_never_exceeds_the_step_cap(project: Path, server_config: Path, keys: dict,
                                                                 fake_server: FakeLLMServer) -> None:
    path = fanout_pipeline(project, "max_concurrency: 3", aside=False, synth=False)
    queue_plan(fake_server, [f"t{n}" for n in range(12)])
    fake_server.latency_s = 0.05
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False, max_concurrency=8)
    assert result.status == "completed" and len(result.outputs["findings"]) == 12
    assert fake_server.max_in_flight == 3  # reached, never passed


def test_join_any_succeeds_with_a_failed_item_and_join_all_fails(project: Path, server_config: Path, keys: dict,
                                                                 fake_server: FakeLLMServer) -> None:
    path = fanout_pipeline(project, "join: any")
    queue_plan(fake_server, TOPICS[:3])
    fake_server.queue_reply("no such model", status=400, match="Research topic-B")
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False)
    records = {r.id: r for r in result.records}
    assert result.status == "completed"
    assert len(result.outputs["findings"]) == 2 and records["findings[1]"].status == "failed"
    assert records["findings"].details["failed_items"] == ["findings[1]"]
    assert "no such model" in (records["findings[1]"].error or "")

    fake_server.reset()
    path = fanout_pipeline(project, "join: all")
    queue_plan(fake_server, TOPICS[:3])
    fake_server.queue_reply("no such model", status=400, match="Research topic-B")
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False)
    records = {r.id: r for r in result.records}
    assert result.status == "failed" and records["findings"].status == "failed"
    assert "1 of 3 items failed (join: all); first: findings[1]" in (records["findings"].error or "")
    assert records["report"].status == "skipped" and records["aside"].status == "completed"


def test_join_min_success(project: Path, server_config: Path, keys: dict, fake_server: FakeLLMServer) -> None:
    path = fanout_pipeline(project, "join: {min_success: 3}")
    queue_plan(fake_server, TOPICS[:3])
    fake_server.queue_reply("nope", status=400, match="Research topic-C")
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False)
    assert {r.id: r.status for r in result.records}["findings"] == "failed"


def test_foreach_over_a_value_that_is_not_a_list_fails_the_step_only(project: Path, server_config: Path, keys: dict,
                                                                     fake_server: FakeLLMServer) -> None:
    prompts(project)
    path = write(project / "bad.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: planner, inputs: [request], output_name: plan}
          - {module: researcher, foreach: plan, as: topic, output_name: findings}
          - {module: writer, inputs: [request], output_name: aside}
        """)
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False)
    records = {r.id: r for r in result.records}
    assert records["findings"].status == "failed" and records["aside"].status == "completed"
    assert "bad.yml:4: step 'findings': foreach plan is a string, not a list" in (records["findings"].error or "")


CONDITIONAL = """
    pipeline:
      - {module: start_module, output_name: request}
      - module: classifier
        inputs: [request]
        output_name: kind
        output_schema: {type: object, properties: {kind: {enum: [technical, general]}}, required: [kind]}
      - {module: tech, inputs: [request], when: "kind.kind == 'technical'", output_name: tech_answer}
      - {module: general, inputs: [request], when: "kind.kind == 'general'", output_name: general_answer}
      - {module: merge, optional_inputs: [tech_answer, general_answer], output_name: answer}
      - {module: merge, inputs: [general_answer], output_name: needs_general}
    """


def test_when_true_and_false_branch_and_merge(project: Path, server_config: Path, keys: dict,
                                              fake_server: FakeLLMServer) -> None:
    prompts(project)
    path = write(project / "cond.yml", CONDITIONAL)
    fake_server.queue_reply('{"kind": "technical"}', match="You are a classifier")
    fake_server.queue_reply("TECH ANSWER", match="technical writer")
    result, log = run_library(path, inputs={"request": "R"}, use_cache=False)
    records = {r.id: r for r in result.records}
    assert result.status == "completed"
    assert records["tech_answer"].status == "completed"
    assert records["general_answer"].status == "skipped" and records["general_answer"].error == "condition false"
    assert records["needs_general"].status == "skipped"  # a required input was skipped
    assert records["answer"].status == "completed" and records["answer"].inputs == {"tech_answer": "TECH ANSWER"}
    assert not requests_with(fake_server, "general writer")
    logged = {s["id"]: s for s in json.loads(Path(log.path).read_text())["steps"]}
    assert logged["general_answer"]["details"]["when"] == "kind.kind == 'general'"


def test_when_that_raises_fails_the_step_with_the_expression(project: Path, server_config: Path, keys: dict,
                                                             fake_server: FakeLLMServer) -> None:
    prompts(project)
    path = write(project / "cond.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: classifier, inputs: [request], output_name: kind}
          - {module: tech, inputs: [request], when: "kind.score > 3", output_name: tech_answer}
          - {module: writer, inputs: [request], output_name: aside}
        """)
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False)
    records = {r.id: r for r in result.records}
    assert records["tech_answer"].status == "failed" and records["aside"].status == "completed"
    error = records["tech_answer"].error or ""
    assert error.startswith("cond.yml:4: step 'tech_answer': when 'kind.score > 3' raised") and "\n" not in error


REVIEW_SCHEMA = ("{type: object, properties: {score: {type: integer}, feedback: {type: string}}, "
                 "required: [score, feedback]}")


def loop_pipeline(project: Path, extra: str = "") -> Path:
    prompts(project)
    return write(project / "loop.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - loop:
              max_iterations: 3
              until: "review.score >= 8"
              {extra}
              steps:
                - {{module: writer, inputs: [request], optional_inputs: [review], output_name: draft}}
                - {{module: critic, inputs: [draft], output_name: review, output_schema: {REVIEW_SCHEMA}}}
            id: refine
            output: draft
            output_name: final_draft
        """)


def test_loop_stops_when_until_holds_and_the_writer_sees_the_review(project: Path, server_config: Path, keys: dict,
                                                                    fake_server: FakeLLMServer) -> None:
    path = loop_pipeline(project)
    fake_server.queue_reply("draft one", match="You are a writer")
    fake_server.queue_reply('{"score": 4, "feedback": "add concrete numbers"}', match="You are a critic")
    fake_server.queue_reply("draft two", match="You are a writer")
    fake_server.queue_reply('{"score": 9, "feedback": "good"}', match="You are a critic")
    result, log = run_library(path, inputs={"request": "R"}, use_cache=False)
    assert result.status == "completed" and result.outputs["final_draft"] == "draft two"
    writers = requests_with(fake_server, "You are a writer")
    assert len(writers) == 2
    assert "add concrete numbers" not in writers[0].last_user_text
    assert "add concrete numbers" in writers[1].last_user_text
    records = {r.id: r for r in result.records}
    assert records["refine"].details == {"iterations": 2, "stopped": "until"}
    assert records["refine#2/draft"].parent == "refine" and records["refine#2/draft"].details["iteration"] == 2
    assert not result.notices
    ids = [s["id"] for s in json.loads(Path(log.path).read_text())["steps"]]
    assert ids == ["request", "refine", "refine#1/draft", "refine#1/review", "refine#2/draft", "refine#2/review"]


def test_loop_hitting_max_iterations_notices_or_fails(project: Path, server_config: Path, keys: dict,
                                                      fake_server: FakeLLMServer) -> None:
    path = loop_pipeline(project)
    fake_server.default_reply = '{"score": 2, "feedback": "weak"}'
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False)
    records = {r.id: r for r in result.records}
    assert result.status == "completed" and records["refine"].details == {"iterations": 3, "stopped": "max_iterations"}
    assert any("reached max_iterations=3" in notice for notice in result.notices)
    assert len(requests_with(fake_server, "You are a writer")) == 3

    path = loop_pipeline(project, "on_exhausted: fail")
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False)
    records = {r.id: r for r in result.records}
    assert result.status == "failed" and records["refine"].status == "failed"
    assert "reached max_iterations=3 without until (review.score >= 8) holding" in (records["refine"].error or "")


def test_sub_pipeline_with_renamed_inputs_and_under_foreach(project: Path, server_config: Path, keys: dict,
                                                            fake_server: FakeLLMServer) -> None:
    prompts(project)
    write(project / "pipelines" / "research.yml", """
        pipeline:
          - {module: start_module, output_name: subject}
          - {module: researcher, inputs: [subject], output_name: notes, options: {}}
          - {module: synth, inputs: [notes], output_name: summary}
        """)
    write(project / "system_prompts" / "researcher.md", "You are a researcher. Research {{ subject }} in depth.\n")
    path = write(project / "main.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {{module: planner, inputs: [request], output_name: plan, output_schema: {PLAN_SCHEMA}}}
          - {{pipeline: pipelines/research.yml, inputs: [request], with: {{subject: request}}, output_name: whole}}
          - {{pipeline: pipelines/research.yml, foreach: plan.topics, as: topic, with: {{subject: topic}},
             output: summary, output_name: per_topic}}
        """)
    queue_plan(fake_server, ["alpha", "beta"])
    fake_server.default_reply = "ok"
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False)
    assert result.status == "completed"
    assert result.outputs["whole"] == {"summary": "ok"}
    assert result.outputs["per_topic"] == ["ok", "ok"]
    records = {r.id: r for r in result.records}
    assert records["per_topic[1]/notes"].parent == "per_topic[1]"
    assert records["whole/subject"].output == "R"
    assert {r.last_user_text.split("\n")[1] for r in requests_with(fake_server, "Research alpha")} == {"alpha"}


def test_cache_answers_every_item_the_second_time(project: Path, server_config: Path, keys: dict,
                                                  fake_server: FakeLLMServer) -> None:
    path = fanout_pipeline(project)
    queue_plan(fake_server, TOPICS[:4])
    first, _ = run_library(path, inputs={"request": "R"})
    assert first.status == "completed"
    fake_server.reset()
    second, _ = run_library(path, inputs={"request": "R"})
    statuses = {r.id: r.status for r in second.records}
    assert all(statuses[f"findings[{n}]"] == "cached" for n in range(4))
    assert second.outputs["findings"] == first.outputs["findings"]
    assert not requests_with(fake_server, "You are a researcher")


def test_sigkill_mid_fanout_then_resume_repeats_no_finished_item(project: Path, server_config: Path, keys: dict,
                                                                 fake_server: FakeLLMServer) -> None:
    path = fanout_pipeline(project, "max_concurrency: 1")
    queue_plan(fake_server, TOPICS[:5])
    fake_server.queue_reply("slow", match="Research topic-C", latency_s=30)
    env = {**os.environ, **keys}
    process = subprocess.Popen([sys.executable, "-m", "orchestrai", "run", str(path), "--input", "request=R",
                                "--no-cache"], cwd=project, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not requests_with(fake_server, "Research topic-C") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    run_id, done = kill_then_resume(process, project, env, fake_server.reset)
    assert done.returncode == 0, done.stderr
    again = [r.last_user_text for r in requests_with(fake_server, "You are a researcher")]
    assert len(again) == 3 and not any("topic-A" in t or "topic-B" in t for t in again)
    assert not requests_with(fake_server, "You are a planner")
    [log_path] = [p for p in (project / "logs").glob("*.json") if run_id not in p.name]
    steps = {s["id"]: s for s in json.loads(log_path.read_text())["steps"]}
    assert steps["findings[0]"]["status"] == steps["findings[1]"]["status"] == "resumed"
    assert steps["findings[2]"]["status"] == "completed" and steps["findings"]["status"] == "completed"
    assert len(steps["findings"]["output"]) == 5


def test_resume_reuses_loop_iterations_and_reruns_from_a_change(project: Path, server_config: Path, keys: dict,
                                                                fake_server: FakeLLMServer) -> None:
    from orchestrai.engine.resume import ResumeSource
    from orchestrai.observe.memory_log import read_log

    path = loop_pipeline(project)
    fake_server.queue_reply('{"score": 4, "feedback": "more"}', match="You are a critic")
    fake_server.queue_reply('{"score": 9, "feedback": "good"}', match="You are a critic")
    first, log = run_library(path, inputs={"request": "R"}, use_cache=False)
    assert first.status == "completed"
    fake_server.reset()
    source = ResumeSource.from_log(Path(log.path), read_log(Path(log.path)))
    second, _ = run_library(path, use_cache=False, resume=source)
    statuses = {r.id: r.status for r in second.records}
    assert all(statuses[f"refine#{i}/{name}"] == "resumed" for i in (1, 2) for name in ("draft", "review"))
    assert second.outputs["final_draft"] == first.outputs["final_draft"] and not fake_server.requests


def test_the_run_budget_stops_a_fanout_between_items(project: Path, server_config: Path, keys: dict,
                                                     fake_server: FakeLLMServer) -> None:
    path = fanout_pipeline(project, "max_concurrency: 1", aside=False)
    text = server_config.read_text().replace("  model: gpt-4o-mini\n", "  model: pricey-model\n  max_tokens: 10\n")
    write(project / "config.yml", text + "pricing:\n  pricey-model: {input: 0.0, output: 1000.0}\n")
    fake_server.queue_reply(json.dumps({"topics": TOPICS}), match="You are a planner", usage=(1, 5))
    for topic in TOPICS:  # each item really costs $0.01; the budget holds the planner and two of them
        fake_server.queue_reply(f"found {topic}", match=f"Research {topic}", usage=(1, 10))
    result, _ = run_library(path, inputs={"request": "R"}, use_cache=False, budget_usd=0.03)
    records = {r.id: r for r in result.records}
    assert result.status == "budget_exceeded"
    researched = len(requests_with(fake_server, "You are a researcher"))
    assert 0 < researched < 6
    assert records["findings"].status == "skipped" and records["report"].status == "skipped"
    assert records[f"findings[{researched}]"].status == "skipped"  # the item the budget refused
    assert f"findings[{researched + 1}]" not in records  # later items never started
