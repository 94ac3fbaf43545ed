"""The config file: schema, lookup, ${ENV} expansion, key fallback and secret redaction."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .errors import ConfigError, Problem, ValidationFailed
from .mcpconfig import McpServerConfig, mcp_problems, mcp_secrets, redact_servers, server_settings
from .modelconfig import ModelConfig, local_model_is_default
from .otelconfig import OtelConfig, OtelSettings, env_header_secrets, settings_from
from .policies import ProviderRateLimits, RetryConfig, Role, new_dict
from .schema_errors import problems_from_validation_error
from .webhookconfig import Endpoint, WebhookConfig, endpoints, redact_webhooks, webhook_problems, webhook_secrets
from .yamlsrc import YamlDoc, load_yaml

if TYPE_CHECKING:
    from .api import ProviderSettings, ProviderType
    from .pipeline.spec import Step
    from .tools.mcp import McpServers, McpServerSettings

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
BUILTIN_PROVIDERS = ("openai", "anthropic", "echo", "local")  # always exist, named like their type


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)


class ProviderConfig(_Strict):
    """One named endpoint. `type: openai` covers every OpenAI-compatible server."""

    # A provider type registered under the `orchestrai.providers` entry points (checked after the
    # schema, with the line). Unset: an entry named like a type keeps that type, any other is openai.
    type: str | None = Field(None, description="openai, anthropic, echo, local, or an installed plugin's type.")
    api_key: SecretStr | None = None
    base_url: str | None = None
    timeout_s: float = Field(120.0, gt=0, description="Seconds before one request times out.")
    latency_s: float = Field(0.0, ge=0, description="echo only: simulated latency per call.")
    rate_limits: ProviderRateLimits | None = Field(None, description="This provider's limits (or under rate_limits:).")
    options: dict[str, Any] = Field(default_factory=new_dict, description="Settings for a plugin provider type.")


class WandbConfig(_Strict):
    enabled: bool = False
    project: str = "orchestrai"
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] | None = None


class Price(_Strict):
    input: float = Field(ge=0, description="USD per 1M input tokens")
    output: float = Field(ge=0, description="USD per 1M output tokens")


class ConfigFile(_Strict):
    """Everything config.yml may hold."""

    providers: dict[str, ProviderConfig] = Field(default_factory=new_dict)
    default_model_config: ModelConfig = Field(default_factory=ModelConfig)
    log_dir: str = "logs"
    max_concurrency: int = Field(8, ge=1)
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    pipeline: str | None = None
    pricing: dict[str, Price] = Field(default_factory=new_dict)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    rate_limits: dict[str, ProviderRateLimits] = Field(default_factory=new_dict, description="Per provider name.")
    budget_usd: float | None = Field(None, gt=0, description="Stop a run before it could spend more than this.")
    cache: bool = Field(True, description="Reuse identical provider calls from the call cache.")
    cache_dir: str | None = Field(None, description="Where the call cache lives (default: the user cache dir).")

    planner: ModelConfig | None = Field(None, description="The model `orchestrai plan` asks for a pipeline "
                                        "(default: default_model_config).")

    workspace_dir: str = Field("generated_code", description="Where code-writing modules put each run's files.")
    allow_execution: bool = Field(False, description="Run generated code without asking (like --yes).")
    roles: dict[str, Role] = Field(default_factory=new_dict, description="Roles steps take with `role:`: the "
                                   "tools and spawns they may use (deny by default), rounds and a budget.")
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=new_dict,
                                                    description="MCP servers whose tools steps may use.")
    otel: OtelConfig | None = Field(None, description="Send each run's trace to an OpenTelemetry collector "
                                    "(without it: when OTEL_EXPORTER_OTLP_ENDPOINT is set).")
    webhooks: list[WebhookConfig] = Field(default_factory=list, description="Receivers of signed event POSTs "
                                          "(Standard Webhooks).")

    @model_validator(mode="after")
    def _default_provider_types(self) -> ConfigFile:
        for name, provider in self.providers.items():
            if provider.type is None:
                provider.type = name if name in BUILTIN_PROVIDERS else "openai"
        return self


@dataclass
class Config:
    """A loaded config: the validated file plus where it came from."""

    file: ConfigFile
    path: Path | None = None  # None when no config file was found (all defaults)
    unset_env: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # dotted key -> (VAR, line)
    notices: list[str] = field(default_factory=list)  # what a run or validate tells about this config (legacy format)
    _builtin_providers: dict[str, ProviderConfig] = field(default_factory=dict, repr=False, compare=False)
    mcp_secrets: list[str] = field(default_factory=list, repr=False)  # env-expanded values and headers
    mcp_lines: dict[str, int | None] = field(default_factory=dict)  # server name -> its line in the file
    shown_path: str = ""  # the path as messages show it (relative to the current directory when inside it)

    @property
    def base_dir(self) -> Path:
        """Relative paths in the config are relative to its own folder (else the current directory)."""
        return self.path.parent if self.path else Path.cwd()

    @property
    def uses_local_default(self) -> bool:
        """True when steps without a provider or model run on the embedded local model (no config, no keys)."""
        return local_model_is_default(self.path is not None, os.environ)

    @property
    def log_dir(self) -> Path:
        return (self.base_dir / self.file.log_dir).resolve()

    @property
    def cache_dir(self) -> Path:
        if self.file.cache_dir:
            return (self.base_dir / self.file.cache_dir).resolve()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "orchestrai"

    def provider_names(self) -> set[str]:
        return {*BUILTIN_PROVIDERS, *self.file.providers}

    def provider(self, name: str) -> ProviderConfig:
        """The settings for provider `name`, with built-in defaults for openai, anthropic, echo and local."""
        if name in self.file.providers:
            return self.file.providers[name]
        if name not in BUILTIN_PROVIDERS:
            raise KeyError(name)
        # Built once per name and kept: the loader asks for each step, the engine for each call.
        if name not in self._builtin_providers:
            self._builtin_providers[name] = ProviderConfig(type=name)
        return self._builtin_providers[name]

    def provider_type(self, name: str) -> ProviderType:
        """The registered ProviderType of provider `name` (raises ConfigError when it is not installed)."""
        from .providers.registry import provider_type

        return provider_type(str(self.provider(name).type))

    def is_free(self, name: str) -> bool:
        """Whether provider `name`'s calls cost nothing (echo, local): no price, no budget."""
        return self.provider_type(name).free

    def provider_settings(self, name: str) -> ProviderSettings:
        """What the provider's type needs to create it: its key, endpoint, timeout and options."""
        from .api import ProviderSettings

        settings = self.provider(name)
        options = {**settings.options, **({"latency_s": settings.latency_s} if settings.latency_s else {})}
        return ProviderSettings(name=name, type=str(settings.type), api_key=self.api_key(name),
                                base_url=settings.base_url, timeout_s=settings.timeout_s,
                                key_env=DEFAULT_KEY_ENV.get(name), base_dir=self.base_dir, options=options)

    @cached_property
    def rate_limits(self) -> dict[str, ProviderRateLimits]:
        """Rate limits per provider name, from `rate_limits:` and from under each provider (one meaning)."""
        merged = dict(self.file.rate_limits)
        for name, provider in self.file.providers.items():
            if provider.rate_limits is not None:
                merged[name] = provider.rate_limits
        return merged

    def api_key(self, name: str) -> str | None:
        """The key for provider `name`: from config, else the standard environment variable.

        Only the two built-in providers fall back to OPENAI_API_KEY / ANTHROPIC_API_KEY: sending an
        OpenAI key to some other OpenAI-compatible server would leak it.
        """
        settings = self.provider(name)
        if settings.api_key is not None:
            return settings.api_key.get_secret_value()
        env_name = DEFAULT_KEY_ENV.get(name)
        return os.environ.get(env_name) if env_name else None

    def missing_key_error(self, name: str, *, step: str | None = None) -> ConfigError:
        """The error for a provider that has no key, saying exactly how to set one."""
        who = f"step {step!r} uses provider {name!r}" if step else f"provider {name!r}"
        dotted = f"providers.{name}.api_key"
        if dotted in self.unset_env:
            var, line = self.unset_env[dotted]
            where = f"{self.path}:{line}: " if self.path else ""
            return ConfigError(f"{where}{who}, whose api_key is ${{{var}}}, but {var} is not set",
                               hint=f"export {var}=... before running")
        env_name = DEFAULT_KEY_ENV.get(name, f"{name.upper()}_API_KEY")
        return ConfigError(f"{who}, which has no API key",
                           hint=f"export {env_name}=... or set {dotted}: ${{{env_name}}} in config.yml")

    def inference_note(self, step: Step) -> str | None:
        """Said with every error about a step's provider when it was inferred from the model name, not chosen."""
        if not step.provider_inferred:
            return None
        provider, model = step.model_settings.get("provider"), step.model_settings.get("model")
        servers = [(name, p.base_url) for name, p in self.file.providers.items() if name != provider and p.base_url]
        choice = (f"set model_config.provider: {servers[0][0]} to use the server at {servers[0][1]}" if servers
                  else f"set model_config.provider to choose another ({', '.join(sorted(self.provider_names()))})")
        return f"provider {provider!r} was inferred from model {model!r}; {choice}"

    def secrets(self) -> list[str]:
        """Every secret value this config can see, for redaction."""
        values = [self.api_key(name) for name in self.provider_names() if name != "echo"]
        otel = self.file.otel
        headers = [v.get_secret_value() for v in otel.headers.values() if v is not None] if otel is not None else []
        return [v for v in values if v] + self.mcp_secrets + webhook_secrets(self.file.webhooks) + headers + \
            env_header_secrets(os.environ)

    def otel_settings(self) -> OtelSettings | None:
        """Where this config sends run traces (`otel:`, else the OTEL_EXPORTER_OTLP_* variables), or None.

        A header whose ${VAR} is not set is a ConfigError at its line: a trace sent without its key
        would be refused by the collector run after run.
        """
        for dotted, (var, line) in self.unset_env.items():
            if dotted.startswith("otel."):
                where = f"{self.shown_path or self.path}:{line}: " if self.path else ""
                raise ConfigError(f"{where}{dotted} is ${{{var}}}, but {var} is not set",
                                  hint=f"export {var}=... before running, or remove it from otel:")
        return settings_from(self.file.otel, os.environ)

    def webhook_endpoints(self) -> list[Endpoint]:
        """The webhooks a run delivers to (ConfigError when a secret's ${VAR} is not set)."""
        return endpoints(self.file.webhooks, path=self.shown_path, unset_env=self.unset_env)

    def mcp_server_settings(self, name: str) -> McpServerSettings:
        """What the MCP server `name` is started with (ConfigError when one of its ${VAR}s is not set)."""
        return server_settings(name, self.file.mcp_servers[name], path=self.shown_path, lines=self.mcp_lines,
                               unset_env=self.unset_env, base_dir=self.base_dir)

    def mcp_servers(self) -> McpServers:
        """One tool source per configured MCP server, each made when first asked for."""
        from .tools.mcp import McpServers

        return McpServers(self.file.mcp_servers, self.mcp_server_settings)

    def redacted(self) -> dict[str, Any]:
        """The config as JSON-able data with every key replaced by '***'."""
        data = self.file.model_dump(mode="json", exclude_none=True)
        for provider in data.get("providers", {}).values():
            if "api_key" in provider:
                provider["api_key"] = "***"
        redact_servers(data)
        if "headers" in data.get("otel", {}):
            data["otel"]["headers"] = dict.fromkeys(data["otel"]["headers"], "***")
        redact_webhooks(data)
        return data


def user_config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "orchestrai"


def find_config(explicit: str | Path | None) -> Path | None:
    """Lookup order: --config, ./config.yml, then the user config dir."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found",
                              hint="check the --config path, or copy config.example.yml to config.yml")
        return path
    for candidate in (Path("config.yml"), user_config_dir() / "config.yml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: str | Path | None = None) -> Config:
    """Find, parse and validate the config; raise ValidationFailed listing every problem."""
    path = find_config(explicit)
    if path is None:
        # All defaults: nothing to validate, so ConfigFile's validator (the schema of every nested
        # model, ~10 ms to build) is not built; the result equals ConfigFile().
        return Config(ConfigFile.model_construct())
    config, problems = parse_config(path)
    if problems:
        raise ValidationFailed(problems)
    assert config is not None
    return config


def parse_config(path: Path) -> tuple[Config | None, list[Problem]]:
    """Parse one config file, returning problems instead of raising."""
    doc, problems = load_yaml(path, expand_env=True)
    if doc is None or problems:
        return None, problems
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        return None, [doc.problem((), "the config must be a mapping of keys (providers:, default_model_config:, ...)")]
    from . import legacy_config as legacy  # imported only when a config file is read

    if legacy.has_legacy_keys(data):
        return _parse_legacy(doc, path)
    try:
        file = ConfigFile.model_validate(data)
    except ValidationError as exc:
        return None, problems_from_validation_error(exc, doc, what="config", model=ConfigFile)
    unset = {".".join(map(str, loc)): (var, doc.line_of(loc)) for loc, var in doc.unset_env.items()}
    config = Config(file, path=path, unset_env=unset, mcp_secrets=mcp_secrets(file.mcp_servers, doc),
                    mcp_lines={name: doc.line_of(("mcp_servers", name)) for name in file.mcp_servers},
                    shown_path=doc.path)
    problems = [*_provider_type_problems(file, doc), *_rate_limit_problems(config, doc),
                *mcp_problems(file.mcp_servers, doc), *webhook_problems(file.webhooks, doc)]
    return (None, problems) if problems else (config, [])


def _provider_type_problems(file: ConfigFile, doc: YamlDoc) -> list[Problem]:
    """Each provider's `type:` must be installed (registered under the orchestrai.providers entry points)."""
    from .providers.registry import registered

    installed = registered()
    problems = []
    for name, provider in file.providers.items():
        if provider.type not in installed:
            where = ("providers", name, "type") if ("providers", name, "type") in doc.lines else ("providers", name)
            problems.append(doc.problem(where, f"provider {name!r}: unknown type {provider.type!r}",
                                        f"installed types: {', '.join(sorted(installed)) or 'none'}"))
    return problems


def _rate_limit_problems(config: Config, doc: YamlDoc) -> list[Problem]:
    """`rate_limits:` must name known providers, and a provider's limits are written in one place only."""
    known = config.provider_names()
    problems = []
    for name in config.file.rate_limits:
        if name not in known:
            problems.append(doc.problem(("rate_limits", name), f"rate_limits: unknown provider {name!r}",
                                        f"use one of {', '.join(sorted(known))}"))
        elif (provider := config.file.providers.get(name)) is not None and provider.rate_limits is not None:
            problems.append(doc.problem(("providers", name, "rate_limits"),
                                        f"provider {name!r} has rate limits here and under rate_limits: (line "
                                        f"{doc.line_of(('rate_limits', name))})", "keep one of the two"))
    return problems


def _parse_legacy(doc: YamlDoc, path: Path) -> tuple[Config | None, list[Problem]]:
    """`parse_config` for a file holding the original's keys: read it as ours, or report a mixture."""
    from . import legacy_config as legacy

    data: dict[Any, Any] = doc.data
    if not legacy.is_legacy(data, ConfigFile.model_fields):
        return None, _mixture_problems(doc, data)
    translation = legacy.translate(data)
    problems = legacy.number_problems(doc, data)
    try:
        file = ConfigFile.model_validate(translation.data)
    except ValidationError as exc:
        problems += legacy.problems_in_legacy_terms(exc, doc, translation)
    if problems:
        return None, sorted(problems, key=lambda problem: problem.line or 0)
    # No ${VAR} can be a provider key here (the original had no providers), so unset_env stays empty.
    return Config(file, path=path, notices=[legacy.notice(doc.path, translation)]), []


def _mixture_problems(doc: YamlDoc, data: dict[Any, Any]) -> list[Problem]:
    """Every legacy key of a file that also uses ours (at its line, naming our key), then the other problems."""
    from . import legacy_config as legacy

    ours = ", ".join(str(key) for key in data if key in ConfigFile.model_fields and key not in legacy.SHARED)
    problems = []
    for key in data:
        if key in legacy.LEGACY_ONLY:
            instead = f"write it as {'.'.join(legacy.MAPPED[key])}" if key in legacy.MAPPED \
                else "remove it: it has no counterpart"
            problems.append(doc.problem((key,), f"{key!r} is a key of the original OrchestrAI format, in a config "
                                                 f"that also uses this format's keys ({ours})", instead))
    rest = {key: value for key, value in data.items() if key not in legacy.LEGACY_ONLY}
    try:
        ConfigFile.model_validate(rest)
    except ValidationError as exc:
        problems += problems_from_validation_error(exc, doc, what="config", model=ConfigFile)
    return problems
