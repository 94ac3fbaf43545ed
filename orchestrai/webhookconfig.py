"""`webhooks:` in config.yml: the schema, the checks the schema cannot make (URL, events, secret), and the
`Endpoint` a delivery hook is made from. A leaf module: the observe layer reads `Endpoint` and the event
names from here without touching the config."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from .errors import ConfigError, Problem
from .yamlsrc import YamlDoc

# The event types a webhook may subscribe to: the snake_case names of the `--events` JSON lines.
# A StepEnded is step_failed, step_skipped or (any other final status) step_finished.
EVENT_NAMES = ("run_started", "run_finished", "step_started", "step_finished", "step_failed", "step_skipped",
               "step_retrying", "rate_limit_waited", "notice", "fanout_started", "loop_iteration", "tool_called")
SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)  # the Standard Webhooks spec: a random key of at least 24 bytes (512 bits at most)
SECRET_HINT = ("use whsec_ + base64 of 32 random bytes: python -c \"import base64,os; "
               "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\"")


class WebhookConfig(BaseModel):
    """One receiver: where to POST, the signing secret, which events, and how hard to try."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), defer_build=True)

    url: str = Field(description="https://... (plain http only to a loopback address, or with allow_insecure).")
    # `| None`: an unset ${VAR} is None, an error only when a run starts (validate passes without it).
    secret: SecretStr | None = Field(None, description="The Standard Webhooks signing secret: whsec_<base64>.")
    events: list[str] = Field(default_factory=lambda: ["run_finished"], description="Event types to deliver.")
    timeout_s: float = Field(10.0, gt=0, le=300, description="Seconds before one attempt times out.")
    max_attempts: int = Field(5, ge=1, le=5, description="Attempts per delivery (retries on timeouts, "
                              "connection errors, 429 and 5xx).")
    deadline_s: float = Field(30.0, gt=0, le=3600, description="How long a delivery may take, and the longest "
                              "the run waits at its end for deliveries still going.")
    allow_insecure: bool = Field(False, description="Allow plain http:// to a host that is not loopback.")
    include_outputs: bool = Field(False, description="run_finished carries the final outputs, step events "
                                  "the step's output.")


@dataclass(frozen=True)
class Endpoint:
    """A receiver as the delivery hook uses it: the key already decoded."""

    url: str
    key: bytes = field(repr=False)
    events: frozenset[str] = frozenset({"run_finished"})
    timeout_s: float = 10.0
    max_attempts: int = 5
    deadline_s: float = 30.0
    include_outputs: bool = False


def signing_key(secret: str) -> bytes | None:
    """The HMAC key of a `whsec_<base64>` secret, as the spec's libraries decode it; None when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    encoded = secret[len(SECRET_PREFIX):]
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def shown_url(url: str) -> str:
    """The URL without credentials or query (tokens often travel there), for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?…" if parts.query else "")


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress  # only a config with webhooks pays for it (validate's start-up time)

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, allow_insecure: bool) -> tuple[str, str] | None:
    """(message, hint) when `url` cannot be a webhook's: malformed, not http(s), or plain http off loopback."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError as exc:
        return f"malformed URL {url!r} ({exc})", "write it as https://host[:port]/path"
    del port
    if parts.scheme not in ("http", "https"):
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        return f"webhook URL {url!r} has {shown}", "use https:// (or http:// to a loopback address)"
    if not parts.hostname or any(char.isspace() for char in url):
        return f"malformed URL {url!r}", "write it as https://host[:port]/path"
    if parts.scheme == "http" and not allow_insecure and not is_loopback(parts.hostname):
        return (f"plain http:// to {parts.hostname!r} sends the payload unencrypted",
                "use https://, or set allow_insecure: true on this webhook")
    return None


def webhook_problems(hooks: list[WebhookConfig], doc: YamlDoc) -> list[Problem]:
    """Each webhook's URL, event names and secret (when it is set), at their lines."""
    import difflib

    problems = []
    for index, hook in enumerate(hooks):
        where = ("webhooks", index)
        found = url_problem(hook.url, hook.allow_insecure)
        if found is not None:
            problems.append(doc.problem((*where, "url"), f"webhooks[{index}].url: {found[0]}", found[1]))
        for position, name in enumerate(hook.events):
            if name not in EVENT_NAMES:
                close = difflib.get_close_matches(name, EVENT_NAMES, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"known events: {', '.join(EVENT_NAMES)}"
                problems.append(doc.problem((*where, "events", position),
                                            f"webhooks[{index}].events: unknown event {name!r}", hint))
        if hook.secret is None and (*where, "secret") not in doc.unset_env:
            problems.append(doc.problem(where, f"webhooks[{index}] has no secret: every delivery is signed",
                                        "add `secret: ${WEBHOOK_SECRET}` (" + SECRET_HINT + ")"))
        elif hook.secret is not None:
            problems += _secret_problems(hook.secret.get_secret_value(), index, doc)
    return problems


def _secret_problems(secret: str, index: int, doc: YamlDoc) -> list[Problem]:
    key = signing_key(secret)
    loc = ("webhooks", index, "secret")
    if key is None:
        return [doc.problem(loc, f"webhooks[{index}].secret is not a Standard Webhooks secret (whsec_<base64>)",
                            SECRET_HINT)]
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        return [doc.problem(loc, f"webhooks[{index}].secret decodes to {len(key)} bytes; the spec asks for "
                                 f"{low} to {high}", SECRET_HINT)]
    return []


def webhook_secrets(hooks: list[WebhookConfig]) -> list[str]:
    """The secrets as written and their base64 part, for the run's Redactor."""
    values = []
    for hook in hooks:
        if hook.secret is not None:
            secret = hook.secret.get_secret_value()
            values += [secret, secret.removeprefix(SECRET_PREFIX)]
    return values


def endpoints(hooks: list[WebhookConfig], *, path: str, unset_env: dict[str, tuple[str, int | None]]) -> list[Endpoint]:
    """The receivers a run delivers to; ConfigError when a secret's ${VAR} is not set."""
    found = []
    for index, hook in enumerate(hooks):
        key = signing_key(hook.secret.get_secret_value()) if hook.secret is not None else None
        if key is None:
            var, line = unset_env.get(f"webhooks.{index}.secret", ("WEBHOOK_SECRET", None))
            where = f"{path}:{line}: " if path and line else ""
            raise ConfigError(f"{where}webhooks[{index}].secret is ${{{var}}}, but {var} is not set",
                              hint=f"export {var}=whsec_... before running ({SECRET_HINT})")
        found.append(Endpoint(hook.url, key, frozenset(hook.events), hook.timeout_s, hook.max_attempts,
                              hook.deadline_s, hook.include_outputs))
    return found


def redact_webhooks(data: dict[str, Any]) -> None:
    """A config dump's webhooks: the secret as '***', the URL without credentials or query."""
    for hook in data.get("webhooks", []):
        if "secret" in hook:
            hook["secret"] = "***"
        hook["url"] = shown_url(hook["url"])
