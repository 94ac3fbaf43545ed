"""`orchestrai report RUN [RUN_B] [-o FILE]` and `orchestrai logs show RUN --open`: thin over orchestrai.report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import OrchestraiError


def config_redactor(config: Path | None) -> Callable[[str], str] | None:
    """The config's redactor (every key it can see), or None when there is no readable config and none was named."""
    from ..config import load_config
    from ..engine.redact import Redactor

    try:
        loaded = load_config(config)
    except OrchestraiError:
        if config is not None:
            raise
        return None
    return Redactor(loaded.secrets())


def report_command(log_dir: Path, run_a: str, run_b: str | None, output: Path | None,
                   config: Path | None) -> Path:
    """Write the report of `run_a` (compared with `run_b` when given); the path written."""
    from ..report import format_of, open_run, write_report

    if output is not None:
        format_of(output)  # a wrong suffix is said before any log is read
    redact = config_redactor(config)
    report = open_run(log_dir, run_a, redact)
    other = open_run(log_dir, run_b, redact) if run_b is not None else None
    names = report.run_id + (f"-{other.run_id}" if other is not None else "")
    return write_report(output or Path(f"report-{names}.html"), report, other, redact)


def open_beside_log(log_dir: Path, run_ref: str, config: Path | None) -> Path:
    """`logs show RUN --open`: the HTML report written beside the log, as `<log>.html`."""
    from ..report import open_run, write_report

    redact = config_redactor(config)
    report = open_run(log_dir, run_ref, redact)
    return write_report(Path(report.path + ".html"), report, redact=redact)
