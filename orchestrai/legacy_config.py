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

import difflib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .config import Config, ConfigFile, find_config, parse_config
from .errors import ConfigError, Problem, ValidationFailed
from .schema_errors import problems_from_validation_error
from .yamlsrc import YamlDoc, load_yaml

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


def is_legacy(data: dict[Any, Any]) -> bool:
    """The original's format: one of its own keys, and none of ours but the shared `pipeline:`."""
    return has_legacy_keys(data) and not any(key in ConfigFile.model_fields and key not in SHARED for key in data)


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
    close = difflib.get_close_matches(name, [*MAPPED, *NO_COUNTERPART, *SHARED], n=1, cutoff=0.8)
    return f"{name} (unknown; did you mean {close[0]}?)" if close else f"{name} (unknown)"


def parse_legacy(doc: YamlDoc, path: Path) -> tuple[Config | None, list[Problem]]:
    """`parse_config` for a file holding the original's keys: read it as ours, or report a mixture."""
    data: dict[Any, Any] = doc.data
    if not is_legacy(data):
        return None, mixture_problems(doc, data)
    translation = translate(data)
    problems = _number_problems(doc, data)
    try:
        file = ConfigFile.model_validate(translation.data)
    except ValidationError as exc:
        problems += _legacy_problems(exc, doc, translation)
    if problems:
        return None, sorted(problems, key=lambda problem: problem.line or 0)
    # No ${VAR} can be a provider key here (the original had no providers), so unset_env stays empty.
    return Config(file, path=path, notices=[notice(doc.path, translation)]), []


def notice(shown: str, translation: Translation) -> str:
    """The one line a run or validate prints about a legacy config."""
    command = "orchestrai config migrate" + ("" if shown == "config.yml" else f" {shown}")
    ignored = f"; ignored: {', '.join(translation.ignored)}" if translation.ignored else ""
    read_as = ", ".join(translation.mapped) or "nothing"
    return (f"{shown} is in the original OrchestrAI format; read as: {read_as}{ignored}. "
            f"Run `{command}` to convert it.")


def mixture_problems(doc: YamlDoc, data: dict[Any, Any]) -> list[Problem]:
    """Every legacy key of a file that also uses ours (at its line, naming our key), then the other problems."""
    ours = ", ".join(str(key) for key in data if key in ConfigFile.model_fields and key not in SHARED)
    problems = []
    for key in data:
        if key in LEGACY_ONLY:
            instead = f"write it as {'.'.join(MAPPED[key])}" if key in MAPPED else "remove it: it has no counterpart"
            problems.append(doc.problem((key,), f"{key!r} is a key of the original OrchestrAI format, in a config "
                                                 f"that also uses this format's keys ({ours})", instead))
    rest = {key: value for key, value in data.items() if key not in LEGACY_ONLY}
    try:
        ConfigFile.model_validate(rest)
    except ValidationError as exc:
        problems += problems_from_validation_error(exc, doc, what="config", model=ConfigFile)
    return problems


def _legacy_problems(exc: ValidationError, doc: YamlDoc, translation: Translation) -> list[Problem]:
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


def _number_problems(doc: YamlDoc, data: dict[Any, Any]) -> list[Problem]:
    problems = []
    for key, (low, high) in NUMBER_RANGES.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            problems.append(doc.problem((key,), f"{key}: must be a number from {low:g} to {high:g} (got {value!r})",
                                        f"it is read as {'.'.join(MAPPED[key])}"))
    return problems


# ---------------------------------------------------------------- `orchestrai config migrate`


@dataclass
class Migration:
    """What `orchestrai config migrate` found: the config file, and its text in our format (None: already ours)."""

    path: Path
    text: str | None
    ignored: list[str] = field(default_factory=list)


def migrate_config(explicit: str | Path | None = None) -> Migration:
    """The config the CLI would read (or `explicit`) in our format; ValidationFailed if it has problems."""
    if explicit is not None and not Path(explicit).is_file():
        raise ConfigError(f"config file {explicit} not found", hint="check the path (default: ./config.yml)")
    path = find_config(explicit)
    if path is None:
        raise ConfigError("no config file found (./config.yml, or config.yml in the user config dir)",
                          hint="pass the path: orchestrai config migrate PATH")
    config, problems = parse_config(path)  # the same checks as a run, ${VAR} expanded
    if problems:
        raise ValidationFailed(problems)
    assert config is not None
    if not config.notices:
        return Migration(path, None)
    raw, problems = load_yaml(path)  # again without expanding ${VAR}: the converted file keeps the references
    if raw is None or problems:
        raise ValidationFailed(problems)
    translation = translate(raw.data)
    return Migration(path, migrated_text(translation), translation.ignored)


def migrated_text(translation: Translation) -> str:
    """Our YAML for a translation, with comments on what changed meaning and what was left out."""
    lines = ["# Converted from the original OrchestrAI format by `orchestrai config migrate`."]
    if translation.ignored:
        lines.append(f"# Ignored (no counterpart in this format): {', '.join(translation.ignored)}")
    for key, value in translation.data.items():
        if key == "workspace_dir":
            lines.append("# was working_codebase_dirname; each run now writes to <workspace_dir>/<run id>")
        lines.append(yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True, default_flow_style=False)
                     .rstrip("\n"))
    return "\n".join(lines) + "\n"


def write_migration(migration: Migration) -> Path:
    """Replace the file with its migrated text, first keeping the original as a backup; returns the backup.

    The backup is `<name>.bak`, or `.bak.1`, `.bak.2`, ... when that exists: an existing backup is never
    overwritten. The new text is written beside the file, then renamed over it, so a crash leaves one of
    the two whole.
    """
    assert migration.text is not None
    backup = _new_backup(migration.path)
    temporary = migration.path.with_name(f".{migration.path.name}.migrating")
    temporary.write_text(migration.text, encoding="utf-8")
    shutil.copymode(migration.path, temporary)
    os.replace(temporary, migration.path)
    return backup


def _new_backup(path: Path) -> Path:
    """Copy `path` to the first free backup name, claimed with O_EXCL so no existing file is replaced."""
    for number in range(1000):
        backup = path.with_name(f"{path.name}.bak" + (f".{number}" if number else ""))
        try:
            with backup.open("xb") as out:
                out.write(path.read_bytes())
        except FileExistsError:
            continue
        shutil.copymode(path, backup)
        return backup
    raise ConfigError(f"too many backups of {path} ({path.name}.bak ... .bak.999)", hint="remove old backups")
