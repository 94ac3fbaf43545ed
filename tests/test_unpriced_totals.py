"""A run whose calls had no price shows its cost as unknown (—), never as $0.0000, wherever totals are shown."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write
from helpers import run_library
from rich.console import Console
from scripted import ScriptedProvider

from orchestrai.cli.render import print_run, runs_table
from orchestrai.cli.runcmd import json_summary
from orchestrai.engine.runner import RunResult
from orchestrai.observe.memory_log import read_log, totals_of
from orchestrai.observe.progress import summary_table
from orchestrai.observe.runs import list_runs

PIPELINE = """
    name: costs
    pipeline:
      - {module: start_module, output_name: request}
      - {module: translator, inputs: [request], output_name: first, supplement: Spanish,
         model_config: {model: %s}}
      - {module: translator, inputs: [request], output_name: second, supplement: French,
         model_config: {model: %s}}
    """


def rendered(renderable: Any = None, *, print_with: Any = None) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    if print_with is not None:
        print_with(console)
    else:
        console.print(renderable)
    return out.getvalue()


def total_row(text: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:1] == ["total"])


@pytest.fixture
def priced_config(project: Path) -> Path:
    return write(project / "config.yml", """
        default_model_config: {model: gpt-4o-mini}
        pricing:
          priced-model: {input: 1000000, output: 1000000}
        log_dir: logs
        cache: false
        """)


def run(project: Path, first_model: str, second_model: str, **options: Any) -> RunResult:
    write(project / "costs.yml", PIPELINE % (first_model, second_model))
    result, _ = run_library("costs.yml", inputs={"request": "hello"}, log_dir=project / "logs",
                            providers={} if options.get("dry_run") else {"openai": ScriptedProvider()}, **options)
    assert result.status == "completed", [r.error for r in result.records]
    return result


def test_a_run_with_only_unpriced_calls_shows_an_unknown_total(project: Path, priced_config: Path) -> None:
    result = run(project, "mystery-model", "another-mystery")

    assert result.totals.cost_usd is None and result.totals.cost_complete is False
    row = total_row(rendered(summary_table(result.records, result.totals)))
    assert row.split()[-1] == "—" and "$" not in row and "unpriced" not in row
    assert json_summary(result, None)["totals"]["cost_usd"] is None


def test_the_logs_show_an_unknown_total_too(project: Path, priced_config: Path) -> None:
    run(project, "mystery-model", "another-mystery")
    [summary] = list_runs(project / "logs")

    listed = rendered(runs_table([summary]))
    shown = rendered(print_with=lambda console: print_run(console, summary.path, read_log(summary.path)))

    assert read_log(summary.path)["totals"]["cost_usd"] is None
    assert "$" not in listed and "—" in listed.splitlines()[-1]
    assert "$" not in shown.splitlines()[1] and shown.splitlines()[1].endswith("tokens, —")
    assert totals_of(read_log(summary.path)["steps"])["cost_usd"] is None  # a journal rebuilt after a crash


def test_some_priced_calls_show_their_cost_plus_unpriced(project: Path, priced_config: Path) -> None:
    result = run(project, "priced-model", "mystery-model")

    # ScriptedProvider: 10 tokens in, 5 out, at $1 a token.
    assert result.totals.cost_usd == pytest.approx(15.0) and result.totals.cost_complete is False
    assert total_row(rendered(summary_table(result.records, result.totals))).endswith("$15.0000 + unpriced")
    assert json_summary(result, None)["totals"]["cost_usd"] == pytest.approx(15.0)
    [summary] = list_runs(project / "logs")
    assert "$15.0000 + unpriced" in rendered(runs_table([summary]))


def test_free_providers_cost_an_honest_zero(project: Path, priced_config: Path) -> None:
    result = run(project, "mystery-model", "another-mystery", dry_run=True)  # every call on the echo provider

    assert result.totals.cost_usd == 0.0 and result.totals.cost_complete is True
    assert total_row(rendered(summary_table(result.records, result.totals))).endswith("$0.0000")
    [summary] = list_runs(project / "logs")
    assert rendered(runs_table([summary])).splitlines()[-1].rstrip().endswith("$0.0000")
    assert json.loads(json.dumps(json_summary(result, None)))["totals"]["cost_usd"] == 0.0


def test_the_live_header_says_unknown_until_a_call_is_priced() -> None:
    from orchestrai.api import CallFinished, Usage
    from orchestrai.observe.progress import _Tally

    tally = _Tally()
    assert tally.cost_text() == "$0.0000"  # nothing called yet: nothing spent
    tally.update(CallFinished("a", "openai", "mystery", Usage(1, 1), None, 0.1))
    assert tally.cost_text() == "—"
    tally.update(CallFinished("b", "openai", "priced", Usage(1, 1), 0.5, 0.1))
    assert tally.cost_text() == "$0.5000 + unpriced"
