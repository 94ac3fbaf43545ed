"""The pipeline file format (pydantic), and its JSON Schema for editors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import Location
from ..modelconfig import ModelConfig
from ..names import MODULE_NAME_PATTERN, NAME_PATTERN
from ..policies import RetryOverride, new_dict, new_list


class FallbackModel(BaseModel):
    """A fallback as a mapping; a plain string is the model name with the provider inferred."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)

    model: str
    provider: str | None = None


class StepSpec(BaseModel):
    """One step as written in the pipeline file."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True, defer_build=True)

    module: str = Field(pattern=MODULE_NAME_PATTERN,
                        description="A Python module (orchestrai modules) or a prompt file name in system_prompts/.")
    inputs: list[str] = Field(default_factory=new_list, description="output_names of earlier steps this step needs.")
    output_name: str = Field(pattern=NAME_PATTERN, description="The name later steps use for this step's output.")
    id: str | None = Field(None, pattern=NAME_PATTERN, description="A unique step id (default: output_name).")
    settings: ModelConfig | None = Field(None, alias="model_config", description="Model settings for this step only.")
    supplement: str | None = Field(None, description="Extra text for the module, e.g. a target language.")
    options: dict[str, Any] = Field(default_factory=new_dict, description="Module-specific options.")
    optional_inputs: list[str] = Field(default_factory=new_list,
                                       description="Inputs the step waits for but runs without if their step fails.")
    critical: bool = Field(True, description="false: this step failing does not fail the run (status partial).")
    priority: int = Field(0, description="When a rate limit is the bottleneck, higher goes first.")
    retry: RetryOverride | None = Field(None, description="Retry settings for this step (config's retry: otherwise).")
    timeout_s: float | None = Field(None, gt=0, description="Seconds one provider call attempt may take.")
    fallback_models: list[str | FallbackModel] = Field(default_factory=new_list,
                                                 description="Tried in order once a model's retries are exhausted.")
    max_cost_usd: float | None = Field(None, gt=0, description="The most this step may spend.")
    cache: bool = Field(True, description="false: never answer this step's calls from the call cache.")
    output_schema: dict[str, Any] | str | None = Field(
        None, description="A JSON Schema (inline, or the path of a .json/.yml/.yaml file relative to the pipeline "
                          "file): the step's output is the model's answer parsed as JSON and validated against it.")
    output_retries: int = Field(2, ge=0, description="How often an answer that does not match output_schema is "
                                                     "sent back with the validator's message and asked again.")


class PipelineHeader(BaseModel):
    """Everything in a pipeline file except its steps (validated apart, so every step's problems are found)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)

    name: str | None = Field(None, description="Defaults to the file name.")
    description: str | None = None
    defaults: ModelConfig | None = Field(None, description="A model_config applied to every step (a step's own wins).")
    budget_usd: float | None = Field(None, gt=0, description="The most this run may spend (overrides config).")


class PipelineFile(PipelineHeader):
    """A whole pipeline file."""

    pipeline: list[StepSpec] = Field(min_length=1, description="The steps, in any order that respects inputs.")


@dataclass(frozen=True)
class Step:
    """A validated step inside the engine: immutable, with its merged settings and source line."""

    id: str
    module: str
    output_name: str
    inputs: tuple[str, ...]
    supplement: str | None
    model_settings: dict[str, Any] = field(hash=False, compare=False)  # defaults merged, step wins
    options: dict[str, Any] = field(hash=False, compare=False)
    location: Location = Location("")  # where the step is written, for messages
    index: int = 0  # position in the file; the scheduler's tie-breaker
    optional_inputs: tuple[str, ...] = ()
    critical: bool = True
    priority: int = 0
    retry: Any = field(default=None, hash=False, compare=False)  # a RetryOverride or None
    timeout_s: float | None = None
    fallbacks: tuple[dict[str, str], ...] = ()  # each {"provider", "model"}, resolved at load time
    max_cost_usd: float | None = None
    cache: bool = True
    provider_inferred: bool = False  # no provider was set: it was inferred from the model's name
    output_schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)  # the schema itself
    output_retries: int = 2

    @property
    def all_inputs(self) -> tuple[str, ...]:
        """Required and optional inputs: every output this step waits for."""
        if not self.optional_inputs:  # the common case, asked once per step run
            return self.inputs
        return self.inputs + tuple(name for name in self.optional_inputs if name not in self.inputs)


@dataclass(frozen=True)
class Pipeline:
    """A loaded pipeline: its name, source and steps in file order."""

    name: str
    path: str
    description: str | None
    steps: tuple[Step, ...]
    budget_usd: float | None = None


def pipeline_json_schema() -> str:
    """The JSON Schema of the pipeline format, for editor completion and checking."""
    schema = PipelineFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "orchestrai pipeline"
    return json.dumps(schema, indent=2)
