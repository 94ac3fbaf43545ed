"""The protocols a plugin implements: a Module (what a step runs), a Provider (what answers a model
call, registered as a ProviderType), and the StepContext a module is given."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import Problem
from ..pipeline.spec import Step
from .values import Completion, Message, TokenCallback, ToolSpec

PROVIDER_ENTRY_POINT_GROUP = "orchestrai.providers"
MODULE_ENTRY_POINT_GROUP = "orchestrai.modules"


class Provider(Protocol):
    """Anything that can answer a list of messages. `settings` is the step's model_config (provider and
    model included); keys it does not know it passes to its API or ignores.

    Structured outputs: for a step with an `output_schema`, `settings["output_schema"]` holds the JSON
    Schema (a dict) the answer must match. A provider that can constrain its answer does so (the
    built-ins: OpenAI `response_format`, an Anthropic forced tool, a llama.cpp grammar, echo a generated
    instance) and returns the JSON as `Completion.text`; one that does not know the key ignores it (it
    must not forward it to its API as is). Either way the engine parses and validates the text and
    sends a wrong answer back to be corrected, so a provider never has to validate.

    Tools: for a step with `tools`, `settings["tools"]` holds a list of `ToolSpec`. A provider that can
    call tools offers them by `wire_name` and returns the calls the model asks for in
    `Completion.tool_calls`; the engine runs them (only those the step allows) and calls again with
    the assistant message (its `tool_calls`) and one `tool` message per result. A provider that
    cannot call tools raises a ProviderError (kind "bad_request") saying so.
    """

    name: str

    async def complete(self, messages: list[Message], settings: dict[str, Any], *,
                       on_token: TokenCallback | None = None) -> Completion: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class ProviderSettings:
    """What config.yml says about one named provider, as its ProviderType's `create` receives it."""

    name: str  # the name steps use (`model_config.provider`)
    type: str  # the entry point it was made by
    api_key: str | None = None  # the key from config or, for the built-in openai/anthropic, the environment
    base_url: str | None = None
    timeout_s: float = 120.0
    key_env: str | None = None  # the environment variable the key is read from, for messages
    base_dir: Path = field(default_factory=Path.cwd)  # relative paths in the config are relative to this
    options: Mapping[str, Any] = field(default_factory=dict)  # every other key under providers.<name>


@dataclass(frozen=True)
class ProviderType:
    """A kind of provider, registered under the `orchestrai.providers` entry-point group.

    `create` is called once per run for each provider a step uses; import heavy SDKs inside it, so
    that `validate` (which reads `free`, `requires_key` and `default_model`) stays fast.
    """

    create: Callable[[ProviderSettings], Provider]
    free: bool = False  # its calls cost nothing (echo, local): no prices, no budget, no API key
    requires_key: bool = True  # False: it never needs an API key (a self-hosted server may not either)
    default_model: str | None = None  # the model a step gets when none is set anywhere
    # Before the run starts, once per distinct model settings: may raise an OrchestraiError (a
    # missing extra, a model that will not load) so the run fails before anything is spent.
    preflight: Callable[[Provider, Mapping[str, Any]], None] | None = None


@runtime_checkable
class StepContext(Protocol):
    """What a module's `run` is given: its step, the run, and the one way to call the step's model."""

    @property
    def step(self) -> Step: ...

    @property
    def run_id(self) -> str: ...

    @property
    def run_inputs(self) -> Mapping[str, Any]: ...

    @property
    def details(self) -> dict[str, Any]:
        """Module-specific facts for the memory log (e.g. the debugger's iterations)."""
        ...

    @property
    def facts(self) -> RunFacts: ...

    async def complete(self, messages: list[Message], **overrides: Any) -> Completion:
        """Call the step's model (settings overridable per call): cache, budget, rate limits, retries,
        fallbacks, accounting and events all apply."""
        ...

    async def complete_structured(self, messages: list[Message], schema: Mapping[str, Any] | None = None,
                                  **overrides: Any) -> Any:
        """Call the step's model for a JSON value matching `schema` (default: the step's `output_schema`)
        and return that value, parsed and validated. A wrong answer is sent back with the validator's
        message, up to the step's `output_retries` times; then a ModuleError naming the step and the
        JSON path. Every call goes through `complete`'s path; the answers are in
        `details["output_attempts"]`."""
        ...

    def notice(self, text: str) -> None:
        """Tell the user something, once per run."""
        ...

    def redact(self, text: str) -> str:
        """`text` with every secret the run knows replaced by `***`."""
        ...


@dataclass
class RunFacts:
    """What a module may know about the run it is part of, beyond its own step."""

    run_id: str = ""
    dry_run: bool = False
    base_dir: Path = field(default_factory=Path.cwd)  # the project's folder: relative paths resolve against it
    workspace: Path | None = None  # --workspace, for modules that write code
    workspace_root: Path = field(default_factory=lambda: Path("generated_code"))  # config workspace_dir
    # Running generated code: allowed (--yes or config), never (--no-exec), or ask `confirm` (a TTY).
    allow_execution: bool = False
    no_exec: bool = False
    confirm: Callable[[str], bool] | None = None
    provider_names: frozenset[str] = frozenset()
    secrets: Sequence[str] = ()  # keep these out of anything a module writes or hands to a child process
    prompt_path: Callable[[str], Path | None] = field(default=lambda name: None, repr=False)


@runtime_checkable
class Module(Protocol):
    """What a step runs: given the step's context and inputs, return its output (any JSON-able value).

    Optional members, each its own protocol below: `check` (validation), `preflight` (before the run),
    `fingerprint_extra` (what else resume must compare).
    """

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> Any: ...


@runtime_checkable
class ChecksSteps(Protocol):
    """A module that finds problems in a step that uses it, at validation time, without running it."""

    def check(self, step: Step) -> list[Problem]: ...


@runtime_checkable
class PreflightsSteps(Protocol):
    """A module that may refuse a step before the run spends anything (raise an OrchestraiError)."""

    def preflight(self, step: Step, facts: RunFacts) -> None: ...


@runtime_checkable
class FingerprintsSteps(Protocol):
    """A module whose output depends on more than its step and inputs: resume compares this too."""

    def fingerprint_extra(self, step: Step, run_inputs: Mapping[str, Any]) -> Any: ...


TOOL_ENTRY_POINT_GROUP = "orchestrai.tools"


@runtime_checkable
class ToolSource(Protocol):
    """Where a run's tools come from: a project's `tools/` folder, an `orchestrai.tools` entry point, an
    MCP server. Started (an MCP server's process) on the first `list_tools` or `call`; `aclose` ends it.
    `call` returns any JSON-able value, or raises ToolError with a message for the model."""

    name: str  # what the tools are listed under: "python", or the MCP server's name

    async def list_tools(self) -> list[ToolSpec]: ...

    async def call(self, tool: ToolSpec, arguments: dict[str, Any]) -> Any: ...

    async def aclose(self) -> None: ...
