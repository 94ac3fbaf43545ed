"""Assertions: each type checked at load time (its keys, files, functions) and against a run's output.

A check returns an AssertionResult and never raises: a `python` function that raises, or a judge
whose answer cannot be parsed, fails that one assertion with one line saying so.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import schemas
from ..errors import Problem
from ..yamlsrc import YamlDoc
from .spec import ASSERTION_TYPES, AssertionSpec
from .variants import Variant

JudgeCheck = Callable[[AssertionSpec], list[tuple[str, str | None]]]  # what is wrong with a judge: (message, hint)

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass
class AssertionResult:
    type: str
    passed: bool
    score: float
    message: str  # what was checked, and for a failure why it failed
    details: dict[str, Any] = field(default_factory=dict)  # a judge's verdict, score and reason


@dataclass
class CheckContext:
    """What one assertion looks at: the chosen output and the run it came from."""

    value: Any
    row: dict[str, Any]
    cost_usd: float | None
    latency_s: float
    base: Path  # the eval file's folder
    outputs: dict[str, Any]
    judge: Callable[[AssertionSpec, str], Awaitable[AssertionResult]] | None = None

    @property
    def text(self) -> str:
        return as_text(self.value)

    def render(self, value: Any) -> Any:
        """`{{ column }}` in a string replaced by the test's value (a data row's column, an input)."""
        if not isinstance(value, str):
            return value
        return _VAR.sub(lambda m: as_text(self.row.get(m.group(1), m.group(0))), value)


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _result(spec: AssertionSpec, passed: bool, what: str, why: str = "", score: float | None = None) -> AssertionResult:
    return AssertionResult(spec.type, passed, float(passed) if score is None else score,
                           what if passed or not why else f"{what}: {why}")


def _excerpt(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


async def _equals(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    expected = ctx.render(spec.value)
    passed = ctx.value == expected if not isinstance(expected, str) else ctx.text == expected
    return _result(spec, passed, f"equals {_excerpt(as_text(expected))}", f"got {_excerpt(ctx.text)}")


async def _contains(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    wanted = [as_text(ctx.render(v)) for v in (spec.value if isinstance(spec.value, list) else [spec.value])]
    fold = spec.type == "icontains"
    haystack = ctx.text.casefold() if fold else ctx.text
    missing = [w for w in wanted if (w.casefold() if fold else w) not in haystack]
    shown = ", ".join(map(repr, wanted))
    return _result(spec, not missing, f"{spec.type} {shown}",
                   f"{missing[0]!r} not in {_excerpt(ctx.text)}" if missing else "")


async def _regex(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    pattern = str(ctx.render(spec.value))
    try:
        found = re.search(pattern, ctx.text) is not None
    except re.error as exc:
        return _result(spec, False, f"regex {pattern}", f"not a valid regular expression: {exc}")
    return _result(spec, found, f"regex {pattern}", f"no match in {_excerpt(ctx.text)}")


def _parsed(value: Any) -> tuple[Any, str | None]:
    return schemas.parse_answer(value) if isinstance(value, str) else (value, None)


async def _is_json(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    _, problem = _parsed(ctx.value)
    return _result(spec, problem is None, "is-json", problem or "")


async def _json_schema(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    value, problem = _parsed(ctx.value)
    if problem is not None:
        return _result(spec, False, "json-schema", problem)
    issue = schemas.validate(value, load_schema(spec.value, ctx.base))
    return _result(spec, issue is None, "json-schema", f"at {issue.json_path}: {issue.message}" if issue else "")


async def _cost_below(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    what = f"cost_usd_below {spec.value}"
    if ctx.cost_usd is None:
        return _result(spec, False, what, "the cost is unknown (a model without a price)")
    return _result(spec, ctx.cost_usd < float(spec.value), what, f"cost ${ctx.cost_usd:.6f}")


async def _latency_below(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    return _result(spec, ctx.latency_s < float(spec.value), f"latency_s_below {spec.value}",
                   f"took {ctx.latency_s:.3f} s")


async def _python(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    target = str(spec.value)
    try:
        fn = python_function(target, ctx.base)
        answer = fn(ctx.value, {"vars": ctx.row, "outputs": ctx.outputs, "cost_usd": ctx.cost_usd,
                                "latency_s": ctx.latency_s})
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as exc:  # the user's code: any failure fails this assertion only
        return _result(spec, False, f"python {target}", f"raised {type(exc).__name__}: {exc}")
    return python_verdict(spec, target, answer)


def python_verdict(spec: AssertionSpec, target: str, answer: Any) -> AssertionResult:
    """A python assertion's answer: a bool, a score, (bool, reason) or {pass, score, reason}."""
    reason = ""
    if isinstance(answer, tuple) and len(answer) == 2:
        answer, reason = answer
    if isinstance(answer, dict):
        reason = str(answer.get("reason", ""))
        score = answer.get("score")
        passed = bool(answer.get("pass", score is not None and float(score) >= (spec.threshold or 0.5)))
        score = float(score) if score is not None else float(passed)
    elif isinstance(answer, bool) or answer is None:
        passed, score = bool(answer), float(bool(answer))
    elif isinstance(answer, (int, float)):
        score = float(answer)
        passed = score >= (spec.threshold if spec.threshold is not None else 0.5)
    else:
        return _result(spec, False, f"python {target}", f"returned {type(answer).__name__}, not a bool, a score "
                       "or {pass, score, reason}")
    return _result(spec, passed, f"python {target}", reason or "returned false", score=score)


async def _rubric(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    assert ctx.judge is not None
    return await ctx.judge(spec, ctx.text)


CHECKS: dict[str, Callable[[AssertionSpec, CheckContext], Awaitable[AssertionResult]]] = {
    "equals": _equals, "contains": _contains, "icontains": _contains, "regex": _regex, "is-json": _is_json,
    "json-schema": _json_schema, "python": _python, "llm-rubric": _rubric, "cost_usd_below": _cost_below,
    "latency_s_below": _latency_below,
}


async def check(spec: AssertionSpec, ctx: CheckContext) -> AssertionResult:
    try:
        return await CHECKS[spec.type](spec, ctx)
    except Exception as exc:  # a bug in a check must not stop the other tests
        return _result(spec, False, spec.type, f"{type(exc).__name__}: {exc}")


_MODULES: dict[Path, ModuleType] = {}


def python_function(target: str, base: Path) -> Callable[..., Any]:
    """`assertions/checks.py:fn` (relative to the eval file's folder, else the current directory)."""
    file, _, name = target.rpartition(":")
    path = next((p for p in (base / file, Path.cwd() / file) if p.is_file()), None)
    if not file or not name or path is None:
        raise ValueError(f"{target!r} is not FILE.py:FUNCTION of an existing file")
    path = path.resolve()
    if path not in _MODULES:
        loaded = importlib.util.spec_from_file_location(f"orchestrai_eval_{path.stem}", path)
        assert loaded is not None and loaded.loader is not None
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)
        _MODULES[path] = module
    fn = getattr(_MODULES[path], name, None)
    if not callable(fn):
        raise ValueError(f"{path.name} defines no function {name!r}")
    return fn  # type: ignore[no-any-return]


def load_schema(value: Any, base: Path) -> dict[str, Any]:
    """An inline schema, or a .json/.yml file relative to the eval file."""
    if isinstance(value, dict):
        return value
    import yaml

    text = (base / str(value)).read_text(encoding="utf-8")
    loaded = json.loads(text) if str(value).endswith(".json") else yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ValueError(f"{value}: a JSON Schema is a mapping")
    return loaded


def check_assertion_spec(spec: AssertionSpec, loc: tuple[Any, ...], doc: YamlDoc, base: Path,
                         variants: list[Variant], check_judge: JudgeCheck) -> list[Problem]:
    """What is wrong with one assertion before anything runs (`base`: the eval file's folder)."""
    if spec.type not in ASSERTION_TYPES:
        close = difflib.get_close_matches(spec.type, list(ASSERTION_TYPES), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(ASSERTION_TYPES)}"
        return [doc.problem((*loc, "type"), f"unknown assertion type {spec.type!r}", hint)]
    needed = ASSERTION_TYPES[spec.type]
    if needed is not None and getattr(spec, needed) is None:
        return [doc.problem(loc, f"assertion {spec.type!r} needs `{needed}:`")]
    problems = []
    try:
        if spec.type == "python":
            python_function(str(spec.value), base)
        elif spec.type == "json-schema":
            issues = schemas.schema_issues(load_schema(spec.value, base))
            if issues:
                raise ValueError(f"not a valid JSON Schema at {issues[0].json_path}: {issues[0].message}")
        elif spec.type in ("cost_usd_below", "latency_s_below"):
            float(spec.value)
        elif spec.type == "llm-rubric":
            problems += [doc.problem(loc, f"llm-rubric judge: {text}", hint) for text, hint in check_judge(spec)]
    except Exception as exc:  # the user's file or value: reported, never raised
        problems.append(doc.problem((*loc, "value"), f"assertion {spec.type!r}: {type(exc).__name__}: {exc}"))
    if spec.step is not None:
        for variant in variants:
            if spec.step not in variant.graph.steps and spec.step not in variant.graph.producers:
                problems.append(doc.problem((*loc, "step"), f"variant {variant.name!r}: the pipeline has no step "
                                            f"or output {spec.step!r}", f"its steps: {', '.join(variant.graph.steps)}"))
                break
    return problems
