"""The wandb hook: a real dry-run pipeline logged to an offline wandb run, read back from disk.

wandb 0.31 no longer ships a Python reader for its `.wandb` transaction log (the old
`wandb.sdk.internal.datastore` is gone), and offline runs write no wandb-summary.json, so
`_records` below reads the log format itself: a 7-byte ":W&B" header, then 32 KiB blocks of
LevelDB-style chunks (crc32 u32, length u16, type u8) holding serialized `Record` protobufs.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrai.errors import MissingExtraError


def _run_translation(hooks: list[Any]) -> Any:
    from helpers import run_library

    result, _ = run_library("pipelines/translation.yml", inputs={"request": "hello sk-SECRET123"}, dry_run=True,
                            hooks=hooks)
    return result


def _finished_records(path: Path, timeout_s: float = 15.0) -> list[Any]:
    """The records of a run file once wandb's service has written its exit record.

    run.finish() returns when the service has the data; writing the file may lag a little behind,
    most of all on a loaded machine, so wait for it (bounded) instead of reading a half-written file.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            records = list(_records(path))
        except Exception:  # noqa: BLE001 - a record cut short while the service is still writing
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def _records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, chunk = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if length == 0 and kind == 0:  # block trailer padding
            pos += left
            continue
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def _summary(records: list[Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
    return summary


@pytest.fixture
def offline_wandb(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    # wandb reads its environment once per process (the wandb.setup() singleton): reset it around
    # each test, or a second test's runs land in the first test's WANDB_DIR.
    wandb.teardown()
    yield tmp_path
    wandb.teardown()


def test_offline_run_logs_trace_table_and_summary(offline_wandb: Path) -> None:
    from orchestrai.observe.wandb_hook import STEP_COLUMNS, WandbHook

    hook = WandbHook("orchestrai-test", None, "offline", redact=lambda s: s.replace("sk-SECRET123", "[REDACTED]"))
    result = _run_translation([hook])
    assert result.status == "completed"
    assert hook.run is None  # finished

    run_dirs = list((offline_wandb / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    log_files = list(run_dirs[0].glob("*.wandb"))
    assert len(log_files) == 1
    records = _finished_records(log_files[0])
    assert b"sk-SECRET123" not in log_files[0].read_bytes()

    tables = list(run_dirs[0].glob("files/media/table/steps_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == STEP_COLUMNS
    rows = {row[0]: dict(zip(STEP_COLUMNS, row, strict=True)) for row in table["data"]}
    assert set(rows) == {"request", "spanish", "french"}
    assert rows["spanish"]["provider"] == "echo" and rows["spanish"]["status"] == "completed"
    assert rows["spanish"]["input_tokens"] > 0

    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_record.display_name == f"translation-{result.run_id}"
    assert run_record.project == "orchestrai-test"
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["pipeline"] == "translation" and config["run_id"] == result.run_id

    summary = _summary(records)
    assert summary["status"] == "completed"
    assert summary["input_tokens"] == result.totals.input_tokens > 0
    assert summary["output_tokens"] == result.totals.output_tokens
    assert summary["steps._type"] == "table-file"
    assert summary["trace._type"] == "wb_trace_tree"

    root = json.loads(summary["trace.root_span_dumps"])
    assert root["name"] == "translation" and root["status_code"] == "SUCCESS"
    children = {span["name"]: span for span in root["child_spans"]}
    assert set(children) == {"request", "spanish", "french"}
    spanish = children["spanish"]
    assert spanish["span_kind"] == "LLM" and spanish["attributes"]["model"] == "gpt-4o-mini"
    assert spanish["start_time_ms"] <= spanish["end_time_ms"]
    assert spanish["results"][0]["inputs"] == {"request": "hello [REDACTED]"}
    assert "translation_es" in spanish["results"][0]["outputs"]


def test_two_runs_in_one_process_get_two_wandb_runs(offline_wandb: Path) -> None:
    from orchestrai.observe.wandb_hook import WandbHook

    hook = WandbHook("orchestrai-test", None, "offline")
    first, second = _run_translation([hook]), _run_translation([hook])
    assert first.run_id != second.run_id
    assert len(list((offline_wandb / "wandb").glob("offline-run-*/*.wandb"))) == 2


def test_a_wandb_error_does_not_break_the_run_and_the_run_still_finishes(
        offline_wandb: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    from orchestrai.observe.wandb_hook import WandbHook

    def broken_table(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("wandb is having a bad day")

    monkeypatch.setattr(wandb, "Table", broken_table)
    hook = WandbHook("orchestrai-test", None, "offline")
    assert _run_translation([hook]).status == "completed"
    (log_file,) = (offline_wandb / "wandb").glob("offline-run-*/*.wandb")
    kinds = [r.WhichOneof("record_type") for r in _finished_records(log_file)]
    assert "exit" in kinds and "history" not in kinds  # finished, though nothing was logged


def test_missing_wandb_raises_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    from orchestrai.observe.wandb_hook import WandbHook

    with pytest.raises(MissingExtraError) as caught:
        WandbHook("orchestrai-test", None, "offline")
    assert caught.value.hint == 'pip install "orchestrai[wandb]"'
    assert "wandb is not installed" in str(caught.value)


def test_the_trace_nests_fanout_items_loop_iterations_and_tool_calls(
        offline_wandb: Path, project: Path, server_config: Path, keys: dict, fake_server: Any) -> None:
    from helpers import run_library
    from test_otel import big_pipeline, script

    from orchestrai.observe.wandb_hook import WandbHook

    script(fake_server)
    hook = WandbHook("orchestrai-test", None, "offline")
    result, _ = run_library(big_pipeline(project), inputs={"request": "R"}, use_cache=False,
                            hooks=[hook])
    assert result.status == "partial"
    (log_file,) = (offline_wandb / "wandb").glob("offline-run-*/*.wandb")
    root = json.loads(_summary(_finished_records(log_file))["trace.root_span_dumps"])

    def children(span: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {child["name"]: child for child in span.get("child_spans") or []}

    top = children(root)
    assert set(top) == {"request", "plan", "findings", "refine", "answer", "flaky_answer", "doomed_answer"}
    findings = top["findings"]
    assert findings["span_kind"] == "CHAIN" and set(children(findings)) == {"findings[0]", "findings[1]"}
    assert children(findings)["findings[0]"]["span_kind"] == "LLM"
    refine = children(top["refine"])
    assert set(refine) == {"refine#1", "refine#2"}
    assert set(children(refine["refine#2"])) == {"refine#2/draft", "refine#2/review"}
    answer = top["answer"]
    assert answer["span_kind"] == "AGENT"
    under = answer["child_spans"]
    assert sorted(span["name"] for span in under) == ["calculate", "gpt-4o-mini", "gpt-4o-mini"]
    tool = children(answer)["calculate"]
    assert tool["span_kind"] == "TOOL" and tool["results"][0]["inputs"] == {"arguments": {"expression": "17 + 25"}}
    assert tool["results"][0]["outputs"] == {"result": 42}
    [attempt] = top["flaky_answer"]["child_spans"]
    assert attempt["status_code"] == "ERROR" and attempt["attributes"]["kind"] == "server"
    assert top["doomed_answer"]["status_code"] == "ERROR" and "no such model here" in top["doomed_answer"][
        "status_message"]
    assert keys["TEST_OPENAI_KEY"] not in log_file.read_text(errors="replace")
