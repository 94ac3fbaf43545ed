"""How to run a pipeline: the run's inputs and the switches the CLI exposes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .resume import ResumeSource
    from .shared import Shared


@dataclass
class RunOptions:
    """Everything about one run that is not in the config or the pipeline file."""

    run_inputs: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False  # every call goes to the echo provider
    stream: bool = False
    max_concurrency: int | None = None  # None: config's max_concurrency
    run_id: str | None = None
    providers: dict[str, Any] = field(default_factory=dict)  # ready-made providers by name (tests, embedding)
    budget_usd: float | None = None  # --budget: overrides the pipeline's and config's budget_usd
    use_cache: bool = True  # --no-cache turns the call cache off for this run
    resume: ResumeSource | None = None  # --resume: reuse matching steps of an earlier run
    # For modules that write and run code (the engineering pipeline):
    workspace: Path | None = None  # None: config workspace_dir / <run id>
    allow_execution: bool = False  # --yes, or config allow_execution
    no_exec: bool = False  # --no-exec: never execute generated code
    confirm: Callable[[str], bool] | None = None  # asks the user on a TTY; None when nobody can answer
    # Providers, rate limiters, budget and call cache shared with other runs (a batch's rows, an eval's
    # tests); None: the run makes its own and closes them when it ends.
    shared: Shared | None = None
    # Deliver the config's `webhooks:` (never in a dry run). False for runs that are a part of another
    # (an eval's judge calls), whose receivers want the runs people asked for.
    webhooks: bool = True
    # Trace the run when config has `otel:` or OTEL_EXPORTER_OTLP_ENDPOINT is set. False for a caller that
    # passes its own OtelHook, and for runs that are part of another (an eval's judge calls).
    otel: bool = True
