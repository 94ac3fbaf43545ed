"""Tools orchestrai ships, registered through the `orchestrai.tools` entry points like any plugin's.

Each is safe to offer a model: no file, network or process access.
"""

from __future__ import annotations

import ast
import math
import operator
from datetime import datetime, timezone
from typing import Any

_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}
_FUNCTIONS: dict[str, Any] = {"sqrt": math.sqrt, "log": math.log, "exp": math.exp, "abs": abs, "round": round,
                              "min": min, "max": max}
_MAX_POWER = 1000  # 10**10**10 would take the process's memory: an expression is a model's text


def calculate(expression: str) -> float | int:
    """Evaluate an arithmetic expression: numbers, + - * / // % **, parentheses, and sqrt, log, exp, abs,
    round, min, max. Example: "(17 + 25) * 2" -> 84."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an arithmetic expression: {exc.msg}") from None
    result: float | int = _evaluate(tree.body)
    return result


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_POWER:
            raise ValueError(f"exponent {right} is too large (at most {_MAX_POWER})")
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
            and not node.keywords:
        return _FUNCTIONS[node.func.id](*(_evaluate(arg) for arg in node.args))
    raise ValueError(f"unsupported in an arithmetic expression: {ast.dump(node)[:60]}")


def word_count(text: str) -> dict[str, int]:
    """Count the words, sentences and characters of a text."""
    sentences = sum(text.count(mark) for mark in ".!?") or (1 if text.strip() else 0)
    return {"words": len(text.split()), "sentences": sentences, "characters": len(text)}


def current_time() -> str:
    """The current date and time in UTC, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
