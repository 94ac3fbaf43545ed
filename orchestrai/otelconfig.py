"""`otel:` in config.yml, or the standard OTEL_EXPORTER_OTLP_* variables: whether a run is traced, and where to.

A leaf module: the config schema (config.py) and the OpenTelemetry hook (observe/otel_hook.py) both
read it, and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .policies import new_dict

OtelProtocol = Literal["http/protobuf", "grpc"]
PROTOCOLS: tuple[OtelProtocol, ...] = ("http/protobuf", "grpc")
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
HEADER_VARS = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
# What OpenTelemetry's own GenAI instrumentations read to record message contents.
CAPTURE_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


class OtelConfig(BaseModel):
    """Send each run's trace to an OTLP endpoint (needs `orchestrai[otel]`)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)

    enabled: bool = Field(True, description="false keeps the block but sends nothing.")
    endpoint: str | None = Field(None, description="The collector's base URL, e.g. http://localhost:4318 "
                                 "(http/protobuf: /v1/traces is added) or http://localhost:4317 (grpc). "
                                 "Unset: OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT.")
    protocol: OtelProtocol | None = Field(None, description="http/protobuf (default) or grpc.")
    # `| None`: an unset ${VAR} is None, reported with its line when a run starts.
    headers: dict[str, SecretStr | None] = Field(default_factory=new_dict,
                                                 description="Sent with every export, e.g. an API key.")
    capture_content: bool = Field(False, description="Record messages, outputs and tool arguments and "
                                  "results in the spans (redacted like the memory log).")
    service_name: str | None = Field(None, description="service.name of the spans (default: OTEL_SERVICE_NAME, "
                                     "else orchestrai).")

    @field_validator("endpoint")
    @classmethod
    def _an_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{value!r} is not an http:// or https:// URL (e.g. http://localhost:4318)")
        return value


@dataclass(frozen=True)
class OtelSettings:
    """What the hook is made from: plain values, the header secrets included (never shown in its repr)."""

    endpoint: str | None = None  # None: the exporter reads OTEL_EXPORTER_OTLP_* itself
    protocol: OtelProtocol = "http/protobuf"
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    capture_content: bool = False
    service_name: str | None = None

    @property
    def traces_endpoint(self) -> str | None:
        """The URL the exporter posts to: http/protobuf adds /v1/traces to a base URL (as the SDK does for
        OTEL_EXPORTER_OTLP_ENDPOINT); a URL already ending in it, and a grpc endpoint, are used as they are."""
        if self.endpoint is None or self.protocol == "grpc" or self.endpoint.rstrip("/").endswith("/v1/traces"):
            return self.endpoint
        return self.endpoint.rstrip("/") + "/v1/traces"


def settings_from(config: OtelConfig | None, environ: Mapping[str, str]) -> OtelSettings | None:
    """The settings a run is traced with, or None: `otel:` in config, else the standard environment variables."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    protocol = _env_protocol(environ)
    if config is not None:
        if not config.enabled:
            return None
        headers = {name: value.get_secret_value() for name, value in config.headers.items() if value is not None}
        return OtelSettings(config.endpoint, config.protocol or protocol, headers, config.capture_content,
                            config.service_name)
    if not any(environ.get(name) for name in ENDPOINT_VARS):
        return None
    capture = environ.get(CAPTURE_VAR, "").strip().lower() == "true"
    return OtelSettings(None, protocol, {}, capture, None)


def _env_protocol(environ: Mapping[str, str]) -> OtelProtocol:
    for name in PROTOCOL_VARS:
        value = environ.get(name, "").strip()
        if value == "grpc":
            return "grpc"
        if value:
            return "http/protobuf"  # http/json is not offered by the exporters we ship
    return "http/protobuf"


def env_header_secrets(environ: Mapping[str, str]) -> list[str]:
    """The values of OTEL_EXPORTER_OTLP_(TRACES_)HEADERS (`k=v,k2=v2`, URL-encoded): keys for the redactor."""
    values = []
    for name in HEADER_VARS:
        for pair in environ.get(name, "").split(","):
            _, equals, value = pair.partition("=")
            if equals and value.strip():
                values.append(unquote(value.strip()))
    return values


__all__ = ["PROTOCOLS", "OtelConfig", "OtelProtocol", "OtelSettings", "env_header_secrets", "settings_from"]
