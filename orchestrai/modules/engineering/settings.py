"""The `options:` a step of the engineering modules may set, with their defaults."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...api import ModuleError
from .sandbox import Limits
from .venv import PIP_LIMITS
from .writer import WriteLimits

if TYPE_CHECKING:
    from ...api import StepContext


class EngineeringOptions(BaseModel):
    """One set for all four modules (each uses what concerns it), so the README documents them once."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="engineer: where to write (relative to the config's folder).")
    entry_point: str | None = Field(None, description="The file to run (default: the plan's, else main.py).")
    args: list[str] | None = Field(None, description="Arguments for the entry point (default: the plan's Run: line).")
    max_iterations: int = Field(5, ge=1, le=50, description="Runs of the program before giving up.")
    fallback_model: str | None = Field(None, description="Model for fix requests after fallback_after failed ones.")
    fallback_provider: str | None = Field(None, description="Provider of fallback_model (default: inferred).")
    fallback_after: int = Field(2, ge=1)
    run_timeout_s: float = Field(30.0, gt=0, le=3600, description="Wall-clock seconds per run of the program.")
    cpu_s: int | None = Field(None, ge=1, description="CPU seconds per process (default: run_timeout_s).")
    memory_mb: int = Field(1024, ge=64, description="Address space per process, MiB.")
    file_size_mb: int = Field(64, ge=1, description="Largest file the program may write, MiB.")
    output_kb: int = Field(64, ge=4, description="Output kept per run, KiB (head and tail).")
    run_tests: bool = Field(False, description="Also run pytest when the codebase has tests.")
    pip_args: list[str] = Field(default_factory=list, description="Extra arguments for pip install.")
    pip_timeout_s: float = Field(600.0, gt=0)
    view_tokens: int = Field(6000, ge=500, description="Token budget of the codebase view sent to the model.")
    max_files: int = Field(200, ge=1, description="Files one answer may write.")
    max_file_kb: int = Field(1024, ge=1, description="Size of one written file, KiB.")
    max_total_kb: int = Field(4096, ge=1, description="Size of all files of one answer, KiB.")

    def limits(self) -> Limits:
        return Limits(timeout_s=self.run_timeout_s, cpu_s=self.cpu_s, memory_mb=self.memory_mb,
                      file_size_mb=self.file_size_mb, output_bytes=self.output_kb * 1024)

    def pip_limits(self) -> Limits:
        return Limits(timeout_s=self.pip_timeout_s, memory_mb=max(self.memory_mb, PIP_LIMITS.memory_mb),
                      file_size_mb=PIP_LIMITS.file_size_mb, output_bytes=self.output_kb * 1024)

    def write_limits(self) -> WriteLimits:
        return WriteLimits(self.max_files, self.max_file_kb * 1024, self.max_total_kb * 1024)


def options_of(ctx: StepContext) -> EngineeringOptions:
    """The step's options, or a one-line error naming the step, the key and the fix."""
    try:
        return EngineeringOptions.model_validate(ctx.step.options or {})
    except ValidationError as exc:
        raise ModuleError(f"{ctx.step.location}: step {ctx.step.id!r}: {_describe(exc)}",
                          hint="see 'The engineering pipeline' in the README for the options") from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, list(EngineeringOptions.model_fields), n=1)
            problems.append(f"unknown option {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        else:
            problems.append(f"option {key!r}: {error['msg']}")
    return "; ".join(problems)
