"""orchestrai: run LLM pipelines written in YAML as a parallel DAG of modules.

The public API is listed in `__all__`. Names are imported on first use, so `import orchestrai`
(and `orchestrai --help`) stays fast.
"""

from __future__ import annotations

from typing import Any

from .lazy import lazy_attribute

__version__ = "0.1.0"

_EXPORTS = {
    "Project": "orchestrai.project",
    "load_config": "orchestrai.config",
    "Config": "orchestrai.config",
    "load_pipeline": "orchestrai.pipeline.loader",
    "check_pipeline": "orchestrai.pipeline.loader",
    "PipelineGraph": "orchestrai.pipeline.graph",
    "run_pipeline": "orchestrai.engine.runner",
    "run_pipeline_sync": "orchestrai.engine.runner",
    "RunOptions": "orchestrai.engine.options",
    "RunResult": "orchestrai.engine.runner",
    "StepContext": "orchestrai.api",
    "Hook": "orchestrai.api",
    "StepRecord": "orchestrai.api",
    "MemoryLog": "orchestrai.observe.memory_log",
    "EventStream": "orchestrai.observe.event_stream",
    "Module": "orchestrai.api",
    "ModuleRegistry": "orchestrai.modules.base",
    "Message": "orchestrai.api",
    "Completion": "orchestrai.api",
    "Usage": "orchestrai.api",
    "Provider": "orchestrai.api",
    "ProviderType": "orchestrai.api",
    "ProviderSettings": "orchestrai.api",
    "OrchestraiError": "orchestrai.errors",
    "ConfigError": "orchestrai.errors",
    "PipelineError": "orchestrai.errors",
    "ProviderError": "orchestrai.errors",
    "ModuleError": "orchestrai.errors",
    "ValidationFailed": "orchestrai.errors",
    "make_plan": "orchestrai.planner",
    "write_plan": "orchestrai.planner",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    return lazy_attribute(globals(), _EXPORTS, name)
