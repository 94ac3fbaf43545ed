"""The original OrchestrAI's config.yml: recognised, read as ours with one notice, and converted on request.

The original kept flat keys (`default_model: gpt-4`, `wandb_enabled: false`, `pipeline: name`). A file is
read this way only when it holds at least one key only the original had and no key of ours but the shared
`pipeline:`. A mixture of both formats is an error: each of the original's keys is reported at its line
with the key to write instead, since guessing which half the author meant would be wrong either way.

`working_codebase_dirname` becomes `workspace_dir`: both name the folder the engineering modules write code
into, relative to the config's folder. The one difference: the original reused that folder for every run,
we give each run its own `<workspace_dir>/<run id>` (so one run never overwrites another's files).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import Problem
from .yamlsrc import YamlDoc

Loc = tuple[str, ...]

# The original's key -> where it goes in ours.
MAPPED: dict[str, Loc] = {
    "default_model": ("default_model_config", "model"),
    "default_temperature": ("default_model_config", "temperature"),
    "default_max_tokens": ("default_model_config", "max_tokens"),
    "default_top_p": ("default_model_config", "top_p"),
    "default_frequency_penalty": ("default_model_config", "frequency_penalty"),
    "default_presence_penalty": ("default_model_config", "presence_penalty"),
    "wandb_enabled": ("wandb", "enabled"),
    "working_codebase_dirname": ("workspace_dir",),
}
# The original's keys with no counterpart here, and why (shown when they are ignored).
NO_COUNTERPART: dict[str, str] = {
    "tools_enabled": "",
    "working_image_dirname": "",
    "openai_api_key": "keys come from OPENAI_API_KEY",  # never copied: it may hold a key
}
NOTES = {"working_codebase_dirname": " (each run in its own <workspace_dir>/<run id>)"}  # where meaning shifts
LEGACY_ONLY = frozenset(MAPPED) | frozenset(NO_COUNTERPART)
SHARED = frozenset({"pipeline"})
# Passed to the provider unchanged by ModelConfig, so checked here: (low, high) of the original's range.
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "default_top_p": (0.0, 1.0), "default_frequency_penalty": (-2.0, 2.0), "default_presence_penalty": (-2.0, 2.0)}


def has_legacy_keys(data: dict[Any, Any]) -> bool:
    """Whether a config mapping holds any key only the original OrchestrAI had."""
    return not LEGACY_ONLY.isdisjoint(data)


def is_legacy(data: dict[Any, Any], ours: Collection[str]) -> bool:
    """The original's format: one of its own keys, and none of `ours` but the shared `pipeline:`."""
    return has_legacy_keys(data) and not any(key in ours and key not in SHARED for key in data)


@dataclass
class Translation:
    """A legacy mapping in our format, and what became of each of its keys."""

    data: dict[str, Any] = field(default_factory=dict)
    origin: dict[Loc, str] = field(default_factory=dict)  # our location -> the legacy key it came from
    mapped: list[str] = field(default_factory=list)  # "default_model -> default_model_config.model", ...
    ignored: list[str] = field(default_factory=list)  # "tools_enabled", "foo (did you mean ...?)", ...

    def put(self, legacy_key: str, loc: Loc, value: Any, shown: str | None = None) -> None:
        target = self.data
        for part in loc[:-1]:
            target = target.setdefault(part, {})
        target[loc[-1]] = value
        self.origin[loc] = legacy_key
        self.mapped.append(shown or f"{legacy_key} -> {'.'.join(loc)}")


def translate(data: dict[Any, Any]) -> Translation:
    """Map each legacy key to ours; a null value leaves the setting unset, as it did in the original."""
    result = Translation()
    for key, value in data.items():
        name = str(key)
        if name in MAPPED:
            if value is None:
                result.mapped.append(f"{name}: null -> unset")
            else:
                result.put(name, MAPPED[name], value, f"{name} -> {'.'.join(MAPPED[name])}{NOTES.get(name, '')}")
        elif name == "pipeline":
            if value is not None:
                path = pipeline_path(value)
                result.put(name, ("pipeline",), path, f"pipeline: {value} -> {path}" if path != value else None)
        else:
            result.ignored.append(_ignored(name))
    return result


def pipeline_path(value: Any) -> Any:
    """The original named a pipeline bare (`engineering_pipeline` for pipelines/engineering_pipeline.yml)."""
    if isinstance(value, str) and value and "/" not in value and "\\" not in value and not Path(value).suffix:
        return f"pipelines/{value}.yml"
    return value


def _ignored(name: str) -> str:
    reason = NO_COUNTERPART.get(name)
    if reason is not None:
        return f"{name} ({reason})" if reason else name
    import difflib  # only for a key nobody knows

    close = difflib.get_close_matches(name, [*MAPPED, *NO_COUNTERPART, *SHARED], n=1, cutoff=0.8)
    return f"{name} (unknown; did you mean {close[0]}?)" if close else f"{name} (unknown)"


def notice(shown: str, translation: Translation) -> str:
    """The one line a run or validate prints about a legacy config."""
    command = "orchestrai config migrate" + ("" if shown == "config.yml" else f" {shown}")
    ignored = f"; ignored: {', '.join(translation.ignored)}" if translation.ignored else ""
    read_as = ", ".join(translation.mapped) or "nothing"
    return (f"{shown} is in the original OrchestrAI format; read as: {read_as}{ignored}. "
            f"Run `{command}` to convert it.")


def problems_in_legacy_terms(exc: ValidationError, doc: YamlDoc, translation: Translation) -> list[Problem]:
    """Pydantic's errors on the translation, told in the legacy keys at their own lines."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        key = next((translation.origin[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in translation.origin),
                   None)
        got = error.get("input")
        shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
        dotted = ".".join(loc)
        problems.append(Problem(doc.path, doc.line_of((key,)) if key else doc.line_of(()),
                                f"{key or dotted}: {error['msg'].lower()}{shown}", f"it is read as {dotted}"))
    return problems


def number_problems(doc: YamlDoc, data: dict[Any, Any]) -> list[Problem]:
    problems = []
    for key, (low, high) in NUMBER_RANGES.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            problems.append(doc.problem((key,), f"{key}: must be a number from {low:g} to {high:g} (got {value!r})",
                                        f"it is read as {'.'.join(MAPPED[key])}"))
    return problems


