"""The fast path for when/until expressions gives jinja2's answers (and errors) on every case it takes."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrai.pipeline.expressions import ExpressionFailed, _compiled, _fast, parse_expression

SCOPE: dict[str, Any] = {
    "review": {"score": 8, "verdict": "revise", "tags": ["a", "b"], "items": {"x": 1}, "nested": {"ok": True}},
    "plan": {"topics": ["t1", "t2"], "n": 0, "none": None},
    "flag": False, "count": 3, "name": "x",
}

CASES = [
    "review.score >= 8", "review.score > 8", "review.score == 8 and review.verdict == 'revise'",
    "review.verdict != 'ok' or flag", "not flag", "not review.nested.ok", "review.tags[0] == 'a'",
    "review['score'] < 9", "plan.topics[1] == 't2'", "'a' in review.tags", "'z' not in review.tags",
    "review is defined", "missing is defined", "missing is undefined", "review.nope is defined",
    "plan.none is none", "plan.n", "count", "[1, 2] == [1, 2]", "plan.topics[5] is defined",
    "review.items.x == 1",  # a dict field named like a dict method: jinja2's own rules apply
    "review.tags | length > 1",  # a filter: not in the subset
    "name > 3", "missing > 3", "review.nope == 1", "plan.topics.x",
]


@pytest.mark.parametrize("source", CASES)
def test_fast_path_agrees_with_jinja2(source: str) -> None:
    expression = parse_expression(source)
    try:
        expected: Any = bool(_compiled(source)(**SCOPE))
    except Exception as exc:  # noqa: BLE001 - comparing failures too
        expected = type(exc)
    try:
        got: Any = expression.evaluate(SCOPE)
    except ExpressionFailed as exc:
        got = str(exc)
    if isinstance(expected, type):
        assert isinstance(got, str) and expected.__name__ in got, (source, got)
    else:
        assert got == expected, source


def test_the_common_forms_take_the_fast_path() -> None:
    for source in ("review.score >= 8", "kind.kind == 'general'", "a.b[0].c and not stop", "review is defined"):
        assert _fast(source) is not None, source
    assert _fast("review.tags | length > 1") is None
