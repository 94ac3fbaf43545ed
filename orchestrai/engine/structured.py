"""Structured calls: ask for JSON matching a schema, validate it, send a wrong answer back, ask again.

Each attempt is one `StepContext` call (cache, budget, rate limits, retries and fallbacks all apply);
the provider gets the schema in its settings under `output_schema`, so the built-in ones constrain
the answer on their side, and a provider that ignores the key is validated all the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .. import schemas
from ..api import Completion, Message, StepRecord
from ..errors import ModuleError
from ..pipeline.spec import Step

Call = Callable[[list[Message], dict[str, Any]], Awaitable[Completion]]  # StepContext's one call, unrecorded

ANSWER_EXCERPT = 500  # characters of each answer kept in details["output_attempts"]


async def structured_call(call: Call, step: Step, record: StepRecord, messages: list[Message],
                          schema: Mapping[str, Any], overrides: dict[str, Any]) -> Any:
    """The parsed, validated answer; after `output_retries` corrections, the step's ModuleError.

    `call` makes one call as `StepContext.complete` does, without recording the messages (done here,
    so a correction's conversation is not logged twice).
    """
    settings = {**overrides, "output_schema": schema}
    attempts: list[dict[str, Any]] = record.details.setdefault("output_attempts", [])
    conversation = list(messages)
    record.messages.extend([{"role": m.role, "content": m.content} for m in messages])
    for attempt in range(1, step.output_retries + 2):
        completion = await call(conversation, settings)
        value, problem = schemas.parse_answer(completion.text)
        issue = schemas.validate(value, schema) if problem is None else None
        error = problem or (f"at {issue.json_path}: {issue.message}" if issue is not None else None)
        attempts.append({"attempt": attempt, "answer": completion.text[:ANSWER_EXCERPT], "error": error})
        if error is None:
            return value
        if attempt > step.output_retries:
            break
        feedback = [Message("assistant", completion.text), Message("user", correction(error))]
        record.messages.extend([{"role": m.role, "content": m.content} for m in feedback])
        conversation += feedback
    tried = f" (after {len(attempts)} answers)" if len(attempts) > 1 else ""
    reason = mismatch_message(step, issue) if issue is not None else (
        f"{step.location}: step {step.id!r}: output is not JSON: {problem}")
    raise ModuleError(reason + tried, hint="every answer is in the memory log (details.output_attempts): "
                      "ask for this shape in the prompt, simplify the schema or raise output_retries")


def correction(error: str) -> str:
    """The user message that sends a wrong answer back."""
    return (f"Your answer does not match the required JSON Schema: {error}. "
            "Reply again with only the corrected JSON value, no other text.")


def mismatch_message(step: Step, issue: schemas.SchemaIssue) -> str:
    """`path:line: step 'plan': output does not match output_schema at $.topics: ...`."""
    where = f"{step.location}: step {step.id!r}"
    return f"{where}: output does not match output_schema at {issue.json_path}: {issue.message}"
