"""An eval's results as JSON and as JUnit XML (one testcase per test x variant)."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .assertions import as_text
from .runner import Cell, EvalReport


def report_dict(report: EvalReport) -> dict[str, Any]:
    """Everything the run found, for `--json` and for making other reports later."""
    return {
        "eval": report.name, "path": report.path, "repeat": report.repeat, "ok": report.ok,
        "duration_s": report.duration_s,
        "variants": [{"name": v.name, "threshold": v.threshold, "passed": v.passed, "total": v.total,
                      "pass_rate": round(v.pass_rate, 4), "met": v.met} for v in report.variants],
        "results": [{"test": cell.test, "variant": cell.variant, "passed": cell.passed, "score": round(cell.score, 4),
                     "cost_usd": cell.cost_usd, "latency_s": round(cell.latency_s, 3),
                     "runs": [dataclasses.asdict(run) for run in cell.runs]} for cell in report.cells.values()],
    }


def write_json(report: EvalReport) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False, default=str)


def failure_lines(cell: Cell) -> list[str]:
    """Why a cell failed: run errors and failed assertions, with the repeat when there are several."""
    lines = []
    for run in cell.runs:
        prefix = f"run {run.repeat}: " if len(cell.runs) > 1 else ""
        if run.error:
            lines.append(prefix + run.error)
        lines += [prefix + a.message for a in run.assertions if not a.passed]
    return lines


def junit_xml(report: EvalReport) -> str:
    """<testsuites> with one <testsuite> per variant; a run error is an <error>, a failed assertion a <failure>."""
    suites = ET.Element("testsuites", name=f"orchestrai eval {report.name}")
    total = failures = errors = 0
    for variant in report.variants:
        cells = [report.cell(test, variant.name) for test in report.tests]
        suite = ET.SubElement(suites, "testsuite", name=variant.name)
        suite_failures = suite_errors = 0
        for cell in cells:
            case = ET.SubElement(suite, "testcase", name=cell.test, classname=f"{report.name}.{variant.name}",
                                 time=f"{sum(r.latency_s for r in cell.runs):.3f}")
            if cell.passed:
                continue
            lines = failure_lines(cell)
            is_error = any(r.error for r in cell.runs) and not any(
                not a.passed for r in cell.runs for a in r.assertions)
            element = ET.SubElement(case, "error" if is_error else "failure",
                                    message=lines[0] if lines else "failed", type="error" if is_error else "assertion")
            element.text = "\n".join(lines)
            output = ET.SubElement(case, "system-out")
            output.text = "\n".join(as_text(r.output) for r in cell.runs if r.output is not None)
            suite_errors += is_error
            suite_failures += not is_error
        suite.set("tests", str(len(cells)))
        suite.set("failures", str(suite_failures))
        suite.set("errors", str(suite_errors))
        total, failures, errors = total + len(cells), failures + suite_failures, errors + suite_errors
    suites.set("tests", str(total))
    suites.set("failures", str(failures))
    suites.set("errors", str(errors))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
