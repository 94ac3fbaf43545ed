"""The errors a user can act on.

Every class carries the exit code the CLI uses and an optional hint. Anything that is *not* an
OrchestraiError is a bug and is shown with a traceback (never with local variables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Why a provider call failed. Retryable: rate_limit (honouring Retry-After), server, timeout, connection.
ErrorKind = Literal["auth", "not_found", "rate_limit", "server", "timeout", "connection", "bad_request"]


class OrchestraiError(Exception):
    """A problem the user can fix; printed as one or two lines, no traceback."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(OrchestraiError):
    """The config file is missing, malformed or lacks a key."""

    exit_code = 2


class PipelineError(OrchestraiError):
    """The pipeline file is wrong in a way its author can fix."""

    exit_code = 2


class InputError(OrchestraiError):
    """A run input (--input, --input-file, stdin) is missing or unreadable."""

    exit_code = 2


class PromptError(OrchestraiError):
    """A system prompt template failed to render."""

    exit_code = 2


class ProviderError(OrchestraiError):
    """An LLM provider call failed; `kind` says why.

    The kinds: auth, not_found, rate_limit, server, timeout, connection, bad_request.
    """

    exit_code = 1
    retryable_kinds: frozenset[ErrorKind] = frozenset({"rate_limit", "server", "timeout", "connection"})

    def __init__(self, message: str, *, kind: ErrorKind, hint: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.kind in self.retryable_kinds


class ModuleError(OrchestraiError):
    """A module failed in a way its author reported deliberately."""

    exit_code = 1


class ToolError(OrchestraiError):
    """A tool failed: it raised, timed out, got bad arguments, or its server is gone. The message goes
    back to the model as the call's error result; the step goes on."""

    exit_code = 1


class MissingExtraError(OrchestraiError):
    """An optional dependency is not installed."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is written: a file and, when known, a line. Shown as `path:line`."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, located as precisely as we can."""

    path: str
    line: int | None
    message: str
    hint: str | None = None

    @classmethod
    def at(cls, location: Location, message: str, hint: str | None = None) -> Problem:
        return cls(location.path, location.line, message, hint)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        text = f"{where}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ValidationFailed(OrchestraiError):
    """One or more problems found while validating config and pipeline; all are reported at once."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
