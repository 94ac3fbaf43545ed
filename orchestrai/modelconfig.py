"""Model settings shared by config defaults, pipeline defaults and each step."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ModelConfig(BaseModel):
    """Which model to call and how; keys beyond these pass through to the provider unchanged."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    provider: str | None = Field(None, description="A provider name from config.yml (openai, anthropic, echo, or one you add); inferred from the model when absent.")
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
    """The provider a step uses: explicit, else claude* models go to anthropic, anything else to openai."""
    if settings.get("provider"):
        return str(settings["provider"])
    model = str(settings.get("model") or "")
    return "anthropic" if model.startswith("claude") else "openai"


DEFAULT_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "echo": "echo"}


def default_model(provider_type: str) -> str | None:
    """The model a step gets when none is set anywhere (None: the user must choose one)."""
    return DEFAULT_MODELS.get(provider_type)


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
