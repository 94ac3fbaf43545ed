"""The contract: the only thing modules, providers, hooks and plugins need to import.

- a Module (`async def run(ctx, inputs)`) gets a StepContext; optional: `check`, `preflight`,
  `fingerprint_extra` (ChecksSteps, PreflightsSteps, FingerprintsSteps);
- a Provider answers messages with a Completion; a ProviderType registered under the
  `orchestrai.providers` entry points makes one from its ProviderSettings;
- a Hook receives the run's events; a SelectiveHook names the event types it wants; a DrainsAsync
  hook is awaited after the run ends (work still going, e.g. webhook deliveries).
The engine implements these; it is not part of the contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..lazy import lazy_attribute

if TYPE_CHECKING:
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
        ToolError,
        ValidationFailed,
    )
    from ..pipeline.spec import Step
    from .contracts import (
        MODULE_ENTRY_POINT_GROUP,
        PROVIDER_ENTRY_POINT_GROUP,
        TOOL_ENTRY_POINT_GROUP,
        ChecksSteps,
        FingerprintsSteps,
        Module,
        PreflightsSteps,
        Provider,
        ProviderSettings,
        ProviderType,
        RunFacts,
        StepContext,
        ToolSource,
    )
    from .events import (
        EVENT_TYPES,
        CallFinished,
        Drained,
        DrainsAsync,
        Event,
        FanoutStarted,
        Hook,
        LoopIteration,
        Notice,
        RateLimitWaited,
        RunDrained,
        RunFinished,
        RunStarted,
        SelectiveHook,
        StepEnded,
        StepRecord,
        StepRetrying,
        StepStarted,
        StepToken,
        ToolCalled,
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
        ToolCall,
        ToolSpec,
        Usage,
    )

# Imported on first use, as `orchestrai` itself: `validate` needs the module contract, not the events
# (a dataclass costs ~0.3 ms to create, and the events are a dozen of them).
_EXPORTS = {
    "CallFinished": "orchestrai.api.events",
    "ChecksSteps": "orchestrai.api.contracts",
    "Completion": "orchestrai.api.values",
    "ConfigError": "orchestrai.errors",
    "Drained": "orchestrai.api.events",
    "DrainsAsync": "orchestrai.api.events",
    "EVENT_TYPES": "orchestrai.api.events",
    "ErrorKind": "orchestrai.errors",
    "Event": "orchestrai.api.events",
    "FanoutStarted": "orchestrai.api.events",
    "LoopIteration": "orchestrai.api.events",
    "FingerprintsSteps": "orchestrai.api.contracts",
    "Hook": "orchestrai.api.events",
    "InputError": "orchestrai.errors",
    "Location": "orchestrai.errors",
    "MODULE_ENTRY_POINT_GROUP": "orchestrai.api.contracts",
    "Message": "orchestrai.api.values",
    "MissingExtraError": "orchestrai.errors",
    "Module": "orchestrai.api.contracts",
    "ModuleError": "orchestrai.errors",
    "ModuleKind": "orchestrai.api.values",
    "Notice": "orchestrai.api.events",
    "OrchestraiError": "orchestrai.errors",
    "PROVIDER_ENTRY_POINT_GROUP": "orchestrai.api.contracts",
    "PipelineError": "orchestrai.errors",
    "PreflightsSteps": "orchestrai.api.contracts",
    "Problem": "orchestrai.errors",
    "PromptError": "orchestrai.errors",
    "Provider": "orchestrai.api.contracts",
    "ProviderError": "orchestrai.errors",
    "ProviderSettings": "orchestrai.api.contracts",
    "ProviderType": "orchestrai.api.contracts",
    "Role": "orchestrai.api.values",
    "ToolCall": "orchestrai.api.values",
    "ToolSpec": "orchestrai.api.values",
    "RunFacts": "orchestrai.api.contracts",
    "RunDrained": "orchestrai.api.events",
    "RunFinished": "orchestrai.api.events",
    "RunStarted": "orchestrai.api.events",
    "RunStatus": "orchestrai.api.values",
    "SUCCESS_STATUSES": "orchestrai.api.values",
    "SelectiveHook": "orchestrai.api.events",
    "Step": "orchestrai.pipeline.spec",
    "StepContext": "orchestrai.api.contracts",
    "ToolSource": "orchestrai.api.contracts",
    "TOOL_ENTRY_POINT_GROUP": "orchestrai.api.contracts",
    "ToolError": "orchestrai.errors",
    "StepEnded": "orchestrai.api.events",
    "StepRecord": "orchestrai.api.events",
    "RateLimitWaited": "orchestrai.api.events",
    "StepRetrying": "orchestrai.api.events",
    "StepStarted": "orchestrai.api.events",
    "StepStatus": "orchestrai.api.values",
    "StepToken": "orchestrai.api.events",
    "TokenCallback": "orchestrai.api.values",
    "Totals": "orchestrai.api.events",
    "ToolCalled": "orchestrai.api.events",
    "Usage": "orchestrai.api.values",
    "ValidationFailed": "orchestrai.errors",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(globals(), _EXPORTS, name)


__all__ = [
    "EVENT_TYPES", "MODULE_ENTRY_POINT_GROUP", "PROVIDER_ENTRY_POINT_GROUP", "SUCCESS_STATUSES",
    "TOOL_ENTRY_POINT_GROUP", "CallFinished", "ChecksSteps", "Completion", "ConfigError", "Drained", "DrainsAsync",
    "ErrorKind", "Event", "FanoutStarted", "FingerprintsSteps", "Hook", "InputError", "Location", "LoopIteration",
    "Message", "MissingExtraError", "Module", "ModuleError", "ModuleKind", "Notice", "OrchestraiError",
    "PipelineError", "PreflightsSteps", "Problem", "PromptError", "Provider", "ProviderError", "ProviderSettings",
    "ProviderType", "RateLimitWaited", "Role", "RunDrained", "RunFacts", "RunFinished", "RunStarted", "RunStatus",
    "SelectiveHook", "Step", "StepContext", "StepEnded", "StepRecord", "StepRetrying", "StepStarted", "StepStatus",
    "StepToken", "TokenCallback", "ToolCall", "ToolCalled", "ToolError", "ToolSource", "ToolSpec", "Totals",
    "Usage", "ValidationFailed",
]
