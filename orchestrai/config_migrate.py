"""`orchestrai config migrate`: a config in the original OrchestrAI's format, written in ours."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import find_config, parse_config
from .errors import ConfigError, ValidationFailed
from .legacy_config import Translation, translate
from .yamlsrc import load_yaml


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
