"""Schemas for how calls are made: retries, rate limits. Shared by config.yml and pipeline steps."""

from __future__ import annotations

import fnmatch
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def new_list() -> list[Any]:
    """`default_factory=list` for the schemas here and in config.py and pipeline/spec.py.

    A Python function, not the builtin: pydantic reads the signature of each default factory, and for a
    builtin (`list`, `dict`) that means parsing its text signature with the tokenize module, whose
    regular expressions take ~5 ms to compile, at the start of every `orchestrai validate` and `run`.
    """
    return []


def new_dict() -> dict[Any, Any]:
    """`default_factory=dict`; see new_list."""
    return {}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)


class RetryConfig(_Strict):
    """How often a failed provider call is retried (rate limits, 5xx, timeouts, dropped connections)."""

    max_attempts: int = Field(3, ge=1, description="Attempts per model, the first included.")
    base_delay_s: float = Field(1.0, ge=0, description="Wait before the 2nd attempt; doubles each time.")
    max_delay_s: float = Field(30.0, ge=0, description="The longest wait between attempts.")
    jitter: float = Field(0.5, ge=0, le=1, description="Fraction of each wait that is random (0: none, 1: all).")

    def merged(self, override: RetryOverride | None) -> RetryConfig:
        """This policy with a step's own settings on top."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class RetryOverride(_Strict):
    """A step's retry settings; anything unset comes from config."""

    max_attempts: int | None = Field(None, ge=1)
    base_delay_s: float | None = Field(None, ge=0)
    max_delay_s: float | None = Field(None, ge=0)
    jitter: float | None = Field(None, ge=0, le=1)


class RateLimit(_Strict):
    """Limits over any 60-second window; unset means unlimited."""

    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0,
                                          description="Prompt estimate + max_tokens, corrected after each call.")
    max_concurrent: int | None = Field(None, gt=0, description="Calls in flight at once.")


class ProviderRateLimits(RateLimit):
    """A provider's limits, with optional tighter limits per model."""

    models: dict[str, RateLimit] = Field(default_factory=new_dict)

    def for_model(self, model: str) -> RateLimit | None:
        return self.models.get(model)

    def has_limits(self) -> bool:
        data: dict[str, Any] = self.model_dump(exclude={"models"}, exclude_none=True)
        return bool(data)


class Role(BaseModel):
    """What steps with `role: NAME` may do: deny by default, so a role allows only what it lists."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    tools: list[str] = Field(default_factory=new_list, description="Tools it may use; globs allowed (weather.*).")
    spawn: list[str] = Field(default_factory=new_list, description="Modules and sub-pipeline files it may call as "
                             "tools; globs allowed.")
    max_tool_rounds: int | None = Field(None, ge=1, description="The most model rounds of a step with this role.")
    budget_usd: float | None = Field(None, gt=0, description="The most all steps with this role may spend in a run.")

    def allows_tool(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.tools)

    def allows_spawn(self, target: str) -> bool:
        return any(fnmatch.fnmatchcase(target, pattern) for pattern in self.spawn)
