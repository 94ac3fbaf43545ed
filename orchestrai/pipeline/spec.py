"""The pipeline file format (pydantic), and its JSON Schema for editors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import Location
from ..modelconfig import ModelConfig
from ..names import MODULE_NAME_PATTERN, NAME_PATTERN
from ..policies import RetryOverride, Role, new_dict, new_list

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .expressions import Expression, Reference

Successors = dict[str, list[str]]  # step id -> the ids of the steps that need its output, in file order


class FallbackModel(BaseModel):
    """A fallback as a mapping; a plain string is the model name with the provider inferred."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)

    model: str
    provider: str | None = None


class StepSpec(BaseModel):
    """One step as written in the pipeline file."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True, defer_build=True)

    module: str | None = Field(None, pattern=MODULE_NAME_PATTERN, description="A Python module (orchestrai "
                               "modules) or a prompt file name in system_prompts/ (or `pipeline:` instead).")
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
    when: str | None = Field(None, description="A Jinja2 expression over earlier outputs (e.g. \"review.verdict == "
                             "'revise'\"): false skips the step (and dependants that need it).")
    foreach: str | None = Field(None, description="An earlier output holding a list (e.g. plan.topics): the step runs "
                                "once per item, and its output is the list of the items' outputs.")
    as_: str = Field("item", alias="as", pattern=NAME_PATTERN,
                     description="The name the current foreach item has for templates and modules.")
    max_concurrency: int | None = Field(None, ge=1, description="The most foreach items of this step in flight.")
    join: Literal["all", "any"] | MinSuccess = Field(
        "all", description="all: a failed item fails the step; any: one success is enough; {min_success: N}.")
    pipeline: str | None = Field(None, description="A pipeline file (relative to this one) run as this step, "
                                                   "instead of a module.")
    with_: dict[str, str] = Field(default_factory=new_dict, alias="with",
                                  description="Sub-pipeline inputs by name: {its_input: name_here}.")
    output: str | None = Field(None, description="The one sub-pipeline output this step returns (default: a dict "
                                                 "of its final outputs).")
    tools: list[str | ToolRef] = Field(default_factory=new_list, description="Tools the model may call: Python "
                                       "tools by name, MCP tools as server.tool, or {module:}/{pipeline:} mappings.")
    role: str | None = Field(None, description="A role from `roles:` (pipeline or config): what the step may use.")
    max_tool_rounds: int = Field(8, ge=1, description="The most model rounds of the tool loop; then the step fails.")
    tool_timeout_s: float | None = Field(None, gt=0, description="Seconds one tool call may take.")


class ToolRef(BaseModel):
    """A tool written as a mapping: a tool with options, or a module or sub-pipeline offered as a tool."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    tool: str | None = Field(None, description="A Python or MCP tool (as in the plain list).")
    module: str | None = Field(None, pattern=MODULE_NAME_PATTERN, description="A module offered as a tool.")
    pipeline: str | None = Field(None, description="A sub-pipeline file offered as a tool (its inputs: arguments).")
    name: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$", description="The tool's name.")
    description: str | None = None
    cacheable: bool = Field(False, description="Same arguments, same result: the call cache may answer it.")


class MinSuccess(BaseModel):
    """join: {min_success: N}: the step succeeds when at least N items do."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    min_success: int = Field(ge=1)


class LoopSpec(BaseModel):
    """The `loop:` mapping: a body of steps run again and again."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    max_iterations: int = Field(ge=1, description="Required: the most iterations the loop runs.")
    until: str | None = Field(None, description="A Jinja2 expression checked after each iteration; true ends the loop.")
    on_exhausted: Literal["notice", "fail"] = Field("notice", description="What reaching max_iterations without "
                                                    "`until` holding does.")
    steps: list[StepSpec] = Field(min_length=1, description="The body. A name produced by the same or a later body "
                                  "step is the previous iteration's value (an optional input).")


class LoopEntry(BaseModel):
    """A loop in the `pipeline:` list."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    loop: LoopSpec
    id: str | None = Field(None, pattern=NAME_PATTERN, description="A unique step id (default: output_name).")
    output: str | None = Field(None, description="Which body output the loop returns (default: the last step's).")
    output_name: str = Field(pattern=NAME_PATTERN, description="The name later steps use for the loop's output.")
    when: str | None = Field(None, description="A Jinja2 expression: false skips the whole loop.")
    critical: bool = True
    priority: int = 0


class PipelineHeader(BaseModel):
    """Everything in a pipeline file except its steps (validated apart, so every step's problems are found)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)

    name: str | None = Field(None, description="Defaults to the file name.")
    description: str | None = None
    defaults: ModelConfig | None = Field(None, description="A model_config applied to every step (a step's own wins).")
    budget_usd: float | None = Field(None, gt=0, description="The most this run may spend (overrides config).")
    roles: dict[str, Role] = Field(default_factory=new_dict, description="Roles steps take with `role:` (these win "
                                   "over config roles of the same name).")


class PipelineFile(PipelineHeader):
    """A whole pipeline file."""

    pipeline: list[StepSpec | LoopEntry] = Field(min_length=1,
                                                 description="The steps, in any order that respects inputs.")


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
    # when / foreach / loop / sub-pipeline: None for a plain step, so the scheduler's hot path tests
    # one attribute.
    control: Control | None = field(default=None, hash=False, compare=False)
    # tools the model may call (deny by default: only these); None for a step without tools.
    tools: Tools | None = field(default=None, hash=False, compare=False)

    @property
    def all_inputs(self) -> tuple[str, ...]:
        """Required and optional inputs: every output the module is given."""
        if not self.optional_inputs:  # the common case, asked once per step run
            return self.inputs
        return self.inputs + tuple(name for name in self.optional_inputs if name not in self.inputs)

    @property
    def dependencies(self) -> tuple[str, ...]:
        """Every output this step waits for: its inputs plus names only its `when`/`foreach` read."""
        if self.control is None:
            return self.all_inputs
        return self.all_inputs + self.control.waits_for

    def requires(self, name: str) -> bool:
        """Whether the step cannot run without output `name` (a required input, or read by when/foreach)."""
        return name in self.inputs or (self.control is not None and name in self.control.waits_for)


@dataclass(frozen=True)
class Pipeline:
    """A loaded pipeline: its name, source and steps in file order."""

    name: str
    path: str
    description: str | None
    steps: tuple[Step, ...]
    budget_usd: float | None = None


@dataclass(frozen=True, eq=False)
class LoopBody:
    """A loop's steps, wired without their backward references (those read the previous iteration)."""

    pipeline: Pipeline
    successors: Successors
    max_iterations: int
    until: Expression | None
    on_exhausted: str  # "notice" or "fail"
    output: str  # the body output the loop returns
    backward: frozenset[str]  # body names read before they are produced in an iteration
    external: tuple[str, ...]  # names the body (and `until`) read from outside the loop


@dataclass(frozen=True, eq=False)
class SubPipeline:
    """A pipeline file run as one step."""

    path: str
    pipeline: Pipeline
    successors: Successors
    bindings: tuple[tuple[str, str], ...]  # (the sub-pipeline's run input, the name it is read from here)
    output: str | None  # one output of the sub-pipeline, or None: a dict of its final outputs


@dataclass(frozen=True, eq=False)
class Control:
    """The deciding parts of one step: a plain step has none, so the scheduler's hot path tests one attribute."""

    when: Expression | None = None
    foreach: Reference | None = None
    item_name: str = "item"
    item_concurrency: int | None = None  # the step's max_concurrency over its items
    join: str | int = "all"  # "all", "any", or the minimum number of items that must succeed
    loop: LoopBody | None = None
    pipeline: SubPipeline | None = None
    # Names only `when`/`foreach` read (not the module's inputs): the step waits for them.
    waits_for: tuple[str, ...] = ()

    @property
    def composite(self) -> bool:
        """Runs other steps (a loop body or a sub-pipeline) instead of one module call."""
        return self.loop is not None or self.pipeline is not None


@dataclass(frozen=True, eq=False)
class ToolUse:
    """One tool a step offers, resolved by the loader."""

    name: str  # as the pipeline names it: "add", "weather.forecast", or a module's / pipeline's tool name
    kind: str  # "python", "mcp", "module" or "pipeline"
    target: str  # the function name, "server.tool", the module name, or the pipeline path
    description: str | None = None
    cacheable: bool = False
    pipeline: SubPipeline | None = None  # a sub-pipeline offered as a tool (its start inputs are the arguments)


@dataclass(frozen=True, eq=False)
class Tools:
    """A step's tools and the limits of its tool loop."""

    uses: tuple[ToolUse, ...]
    max_rounds: int = 8
    timeout_s: float | None = None
    role: str | None = None
    role_budget_usd: float | None = None


LOOP_MODULE = "<loop>"  # the module a loop step's record shows
PIPELINE_MODULE = "<pipeline>"


def module_steps(pipeline: Pipeline) -> Iterator[Step]:
    """Every step that runs a module, loop bodies and sub-pipelines included (each sub-pipeline once)."""
    return _module_steps(pipeline, set())


def _module_steps(pipeline: Pipeline, seen: set[str]) -> Iterator[Step]:
    for step in pipeline.steps:
        control = step.control
        if control is None or not control.composite:
            yield step
        elif control.loop is not None:
            yield from _module_steps(control.loop.pipeline, seen)
        elif control.pipeline is not None and control.pipeline.path not in seen:
            seen.add(control.pipeline.path)
            yield from _module_steps(control.pipeline.pipeline, seen)


def pipeline_json_schema() -> str:
    """The JSON Schema of the pipeline format, for editor completion and checking."""
    schema = PipelineFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "orchestrai pipeline"
    return json.dumps(schema, indent=2)
