"""The contract: the only thing modules, providers, hooks and plugins need to import.

- a Module (`async def run(ctx, inputs)`) gets a StepContext; optional: `check`, `preflight`,
  `fingerprint_extra` (ChecksSteps, PreflightsSteps, FingerprintsSteps);
- a Provider answers messages with a Completion; a ProviderType registered under the
  `orchestrai.providers` entry points makes one from its ProviderSettings;
- a Hook receives the run's events; a SelectiveHook names the event types it wants.
The engine implements these; it is not part of the contract.
"""

from __future__ import annotations

from ..errors import (
    ConfigError,
    ErrorKind,
    InputError,
    Location,
    MissingExtraError,
    ModuleError,
    OrchestraiError,
    PipelineError,
    Problem,
    PromptError,
    ProviderError,
    ValidationFailed,
)
from ..pipeline.spec import Step
from .contracts import (
    MODULE_ENTRY_POINT_GROUP,
    PROVIDER_ENTRY_POINT_GROUP,
    ChecksSteps,
    FingerprintsSteps,
    Module,
    PreflightsSteps,
    Provider,
    ProviderSettings,
    ProviderType,
    RunFacts,
    StepContext,
)
from .events import (
    EVENT_TYPES,
    CallFinished,
    Event,
    Hook,
    Notice,
    RunFinished,
    RunStarted,
    SelectiveHook,
    StepEnded,
    StepRecord,
    StepRetrying,
    StepStarted,
    StepToken,
    Totals,
)
from .values import (
    SUCCESS_STATUSES,
    Completion,
    Message,
    ModuleKind,
    Role,
    RunStatus,
    StepStatus,
    TokenCallback,
    Usage,
)

__all__ = [
    "EVENT_TYPES", "MODULE_ENTRY_POINT_GROUP", "PROVIDER_ENTRY_POINT_GROUP", "SUCCESS_STATUSES",
    "CallFinished", "ChecksSteps", "Completion", "ConfigError", "ErrorKind", "Event", "FingerprintsSteps", "Hook",
    "InputError", "Location", "Message", "MissingExtraError", "Module", "ModuleError", "ModuleKind", "Notice",
    "OrchestraiError", "PipelineError", "PreflightsSteps", "Problem", "PromptError", "Provider", "ProviderError",
    "ProviderSettings", "ProviderType", "Role", "RunFacts", "RunFinished", "RunStarted", "RunStatus",
    "SelectiveHook", "Step", "StepContext", "StepEnded", "StepRecord", "StepRetrying", "StepStarted",
    "StepStatus", "StepToken", "TokenCallback", "Totals", "Usage", "ValidationFailed",
]
