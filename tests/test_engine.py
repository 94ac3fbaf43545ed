"""The scheduler and step context: parallelism, failure isolation, retries, concurrency cap, interrupts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import write
from helpers import run_library
from scripted import ScriptedProvider, rate_limited

from orchestrai.engine.runner import RunOptions, run_pipeline
from orchestrai.errors import InputError, ProviderError
from orchestrai.observe.memory_log import MemoryLog
from orchestrai.project import Project

DIAMOND = """
    pipeline:
      - {module: start_module, output_name: request}
      - {module: task_planner, inputs: [request], output_name: left, model_config: {latency_s: 0.3}}
      - {module: translator, inputs: [request], output_name: right, supplement: Spanish, model_config: {latency_s: 0.3}}
      - {module: scrutinizer, inputs: [left, right], output_name: joined}
    """


def test_diamond_runs_middle_steps_together_and_joins_both(project: Path) -> None:
    write(project / "diamond.yml", DIAMOND)
    provider = ScriptedProvider(reply=lambda messages: f"out<{messages[-1].content[:60]}>")
    result, _ = run_library("diamond.yml", inputs={"request": "R"}, providers={"openai": provider})
    assert result.status == "completed"
    left, right = (next(c for c in provider.calls
                        if c.settings.get("supplement") is None and step in c.messages[0].content)
                   for step in ("planner", "translator"))
    assert left.started < right.ended and right.started < left.ended, "the two middle steps must overlap"
    last = provider.calls[-1]
    assert "## left\n" in last.messages[1].content and "## right\n" in last.messages[1].content
    assert result.outputs["left"] in last.messages[1].content and result.outputs["right"] in last.messages[1].content


def test_slow_branch_does_not_hold_up_an_unrelated_one(project: Path) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: slow, model_config: {latency_s: 0.5}}
          - {module: translator, inputs: [request], output_name: fast1, model_config: {latency_s: 0.05}}
          - {module: translator, inputs: [fast1], output_name: fast2, model_config: {latency_s: 0.05}}
        """)
    provider = ScriptedProvider()
    result, _ = run_library("p.yml", inputs={"request": "R"}, providers={"openai": provider})
    records = {r.id: r for r in result.records}
    assert records["fast2"].finished_at < records["slow"].finished_at  # no layer barrier


def test_failed_step_skips_dependants_and_independent_branch_finishes(project: Path) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: broken, supplement: FAIL}
          - {module: enhancer, inputs: [broken], output_name: after_broken}
          - {module: translator, inputs: [request], output_name: fine, supplement: OK, model_config: {latency_s: 0.1}}
        """)

    def reply(messages):
        if "FAIL" in messages[-1].content:
            raise ProviderError("provider 'openai' rejected the API key (401): bad key", kind="auth")
        return "ok"

    provider = ScriptedProvider(reply=reply)
    result, memory_log = run_library("p.yml", inputs={"request": "R"}, providers={"openai": provider})
    status = {r.id: r.status for r in result.records}
    assert result.status == "failed"
    assert status == {"request": "completed", "broken": "failed", "after_broken": "skipped", "fine": "completed"}
    log = json.loads(memory_log.path.read_text())
    broken = next(s for s in log["steps"] if s["id"] == "broken")
    assert broken["error"].startswith("step 'broken': provider 'openai' rejected the API key (401)")
    assert len(broken["attempts"]) == 1, "401 is never retried"
    skipped = next(s for s in log["steps"] if s["id"] == "after_broken")
    assert "needs 'broken' from step 'broken', which did not complete" in skipped["error"]


def test_rate_limit_is_retried_and_attempts_recorded(project: Path) -> None:
    write(project / "config.yml", "retry: {max_attempts: 3, base_delay_s: 0.01, max_delay_s: 0.02}\n")
    provider = ScriptedProvider(replies=[rate_limited(), rate_limited(), "finally"])
    result, memory_log = run_library("pipelines/translation.yml", inputs={"request": "R"},
                                     providers={"openai": provider}, max_concurrency=1)
    assert result.status == "completed"
    log = json.loads(memory_log.path.read_text())
    spanish = next(s for s in log["steps"] if s["id"] == "spanish")
    assert [a.get("kind") for a in spanish["attempts"]] == ["rate_limit", "rate_limit", None]
    assert spanish["output"] == "finally"


def test_rate_limit_gives_up_after_max_attempts(project: Path) -> None:
    write(project / "config.yml", "retry: {max_attempts: 2, base_delay_s: 0.01, max_delay_s: 0.02}\n")
    provider = ScriptedProvider(reply=lambda m: (_ for _ in ()).throw(rate_limited()))
    result, _ = run_library("pipelines/translation.yml", inputs={"request": "R"}, providers={"openai": provider})
    spanish = next(r for r in result.records if r.id == "spanish")
    assert spanish.status == "failed" and "after 2 attempts" in spanish.error


def test_max_concurrency_caps_parallel_steps(project: Path) -> None:
    steps = "\n".join(f"  - {{module: translator, inputs: [request], output_name: t{i}, "
                      f"model_config: {{latency_s: 0.05}}}}"
                      for i in range(12))
    write(project / "wide.yml", "pipeline:\n  - {module: start_module, output_name: request}\n" + steps + "\n")
    provider = ScriptedProvider()
    result, _ = run_library("wide.yml", inputs={"request": "R"}, providers={"openai": provider}, max_concurrency=3)
    assert result.status == "completed"
    assert provider.max_in_flight == 3


def test_missing_run_input_fails_before_anything_runs(project: Path) -> None:
    provider = ScriptedProvider()
    with pytest.raises(InputError) as caught:
        run_library("pipelines/translation.yml", providers={"openai": provider})
    assert "--input request=" in str(caught.value)
    assert provider.calls == []


def test_missing_key_names_the_variable(project: Path) -> None:
    from orchestrai.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        run_library("pipelines/translation.yml", inputs={"request": "R"})
    assert "step 'spanish' uses provider 'openai', which has no API key" in str(caught.value)
    assert "export OPENAI_API_KEY=" in str(caught.value)


def test_unset_env_reference_in_config_is_named(project: Path) -> None:
    from orchestrai.errors import ConfigError

    write(project / "config.yml", "providers:\n  anthropic:\n    api_key: ${MY_CLAUDE_KEY}\n")
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: t, model_config: {model: claude-haiku-4-5}}
        """)
    with pytest.raises(ConfigError) as caught:
        run_library("p.yml", inputs={"request": "R"})
    text = str(caught.value)
    assert "config.yml:3:" in text and "MY_CLAUDE_KEY is not set" in text and "export MY_CLAUDE_KEY=" in text


def test_interrupt_keeps_finished_steps_and_marks_run_interrupted(project: Path, tmp_path: Path) -> None:
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: translator, inputs: [request], output_name: quick}
          - {module: translator, inputs: [quick], output_name: stuck, model_config: {latency_s: 30}}
          - {module: enhancer, inputs: [stuck], output_name: never}
        """)
    project_ = Project.open(None)
    graph = project_.load("p.yml")
    memory_log = MemoryLog(tmp_path / "logs")
    provider = ScriptedProvider()

    async def main() -> None:
        task = asyncio.create_task(run_pipeline(graph, project_.config, project_.registry,
                                                RunOptions(run_inputs={"request": "R"}, providers={"openai": provider}),
                                                [memory_log]))
        while len(provider.calls) < 2:
            await asyncio.sleep(0.01)
        task.cancel()  # what asyncio.run does on Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    log = json.loads(memory_log.path.read_text())
    assert log["status"] == "interrupted"
    assert [s["status"] for s in log["steps"]] == ["completed", "completed", "interrupted", "skipped"]
    assert log["steps"][1]["output"].startswith("reply to")


def test_module_bug_fails_the_step_with_its_traceback(project: Path) -> None:
    write(project / "modules" / "crash.py", """
        async def run(ctx, inputs):
            return 1 / 0
        """)
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: crash, inputs: [request], output_name: boom}
        """)
    result, _ = run_library("p.yml", inputs={"request": "R"})
    boom = next(r for r in result.records if r.id == "boom")
    assert boom.status == "failed" and boom.error.startswith("ZeroDivisionError: division by zero")
    assert "crash.py" in boom.error


def test_python_module_calls_the_model_through_ctx(project: Path) -> None:
    write(project / "modules" / "one_word.py", """
        from orchestrai import Message

        async def run(ctx, inputs):
            answer = await ctx.complete([Message("system", "Reply with one word."),
                                         Message("user", inputs["request"])], temperature=0)
            return answer.text.strip().lower()
        """)
    write(project / "p.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: one_word, inputs: [request], output_name: word, model_config: {model: gpt-4o, temperature: 0.9}}
        """)
    provider = ScriptedProvider(replies=["  YES "])
    result, memory_log = run_library("p.yml", inputs={"request": "Is water wet?"}, providers={"openai": provider})
    assert result.outputs["word"] == "yes"
    [call] = provider.calls
    assert call.settings["temperature"] == 0 and call.settings["model"] == "gpt-4o"
    step = next(s for s in json.loads(memory_log.path.read_text())["steps"] if s["id"] == "word")
    assert step["messages"][0] == {"role": "system", "content": "Reply with one word."}
    assert step["usage"] == {"input_tokens": 10, "output_tokens": 5} and step["cost_usd"] > 0


class _Recorder:
    """A hook that keeps every event it receives; `events` narrows what it is sent."""

    def __init__(self, events: frozenset[type] | None = None) -> None:
        if events is not None:
            self.events = events
        self.seen: list[object] = []

    def on_event(self, event: object) -> None:
        self.seen.append(event)


def test_hooks_receive_only_the_event_types_they_declare(project: Path) -> None:
    from orchestrai.api import CallFinished, RunFinished, StepEnded, StepStarted

    write(project / "diamond.yml", DIAMOND)
    narrow, everything = _Recorder(frozenset({StepEnded, RunFinished})), _Recorder()
    result, _ = run_library("diamond.yml", inputs={"request": "R"}, providers={"openai": ScriptedProvider()},
                            hooks=[narrow, everything])
    assert result.status == "completed"
    assert {type(e) for e in narrow.seen} == {StepEnded, RunFinished}
    assert [e.record.id for e in narrow.seen if isinstance(e, StepEnded)] == \
        [e.record.id for e in everything.seen if isinstance(e, StepEnded)]
    assert sum(isinstance(e, StepStarted) for e in everything.seen) == 4
    assert sum(isinstance(e, CallFinished) for e in everything.seen) == 3


def test_fingerprints_are_computed_when_read_and_match_the_log(project: Path) -> None:
    from orchestrai.engine.resume import Fingerprints

    write(project / "diamond.yml", DIAMOND)
    project_ = Project.open()
    graph = project_.load("diamond.yml")
    options = RunOptions(run_inputs={"request": "R"}, providers={"openai": ScriptedProvider()})
    result = asyncio.run(run_pipeline(graph, project_.config, project_.registry, options, hooks=[]))
    record = next(r for r in result.records if r.id == graph.pipeline.steps[1].id)
    assert record._fingerprint is None, "nobody read it during the run, so it was not computed"
    expected = Fingerprints(project_.registry).of(graph.pipeline.steps[1])
    assert record.fingerprint == expected and record._fingerprint == expected

    logged, memory_log = run_library("diamond.yml", inputs={"request": "R"}, providers={"openai": ScriptedProvider()})
    steps = {s["id"]: s for s in json.loads(memory_log.path.read_text())["steps"]}
    assert steps[record.id]["fingerprint"] == expected


def test_a_run_leaves_the_garbage_collector_as_it_found_it(project: Path) -> None:
    import gc

    write(project / "diamond.yml", DIAMOND)
    assert gc.get_freeze_count() == 0
    run_library("diamond.yml", inputs={"request": "R"}, providers={"openai": ScriptedProvider()})
    assert gc.get_freeze_count() == 0, "the heap frozen for the run must be unfrozen after it"
    gc.freeze()  # a caller that froze its own heap keeps it frozen
    try:
        frozen = gc.get_freeze_count()
        run_library("diamond.yml", inputs={"request": "R"}, providers={"openai": ScriptedProvider()})
        # Frozen objects can still be freed by reference counting, so the count may drop a little;
        # unfreezing would take it to 0.
        assert gc.get_freeze_count() > frozen // 2
    finally:
        gc.unfreeze()


def test_log_timestamps_match_datetime_isoformat() -> None:
    import random
    from datetime import datetime, timezone

    from orchestrai.observe.memory_log import iso

    rng = random.Random(7)
    stamps = [rng.uniform(1.6e9, 1.9e9) for _ in range(3000)]
    stamps += [int(t) + edge for t in stamps[:300] for edge in (0.0, 0.0004999, 0.0005, 0.9994999, 0.9999996)]
    for stamp in stamps:
        assert iso(stamp) == datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="milliseconds"), stamp
    assert iso(None) is None
