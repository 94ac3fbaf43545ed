"""Entry points (plugins) found cheaply: the `orchestrai.modules` and `orchestrai.providers` groups.

importlib.metadata parses the metadata of every installed distribution to answer (10-20 ms with
~170 distributions, on every `validate` and `run`). Reading the `entry_points.txt` files on sys.path
directly, and parsing only those that mention a group, gives the same answer in ~3 ms. Where that
look cannot see everything (a zip or egg on the path, another distribution finder in
sys.meta_path), importlib.metadata answers instead.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


@dataclass(frozen=True)
class Plugin:
    """One entry point: `name = value` in a distribution's group."""

    name: str
    value: str  # "package.module:attribute"
    distribution: str

    def load(self) -> Any:
        module, _, attribute = self.value.partition(":")
        found: Any = importlib.import_module(module.strip())
        for part in attribute.split("[", 1)[0].strip().split("."):
            if part:
                found = getattr(found, part)
        return found


def entry_points(group: str) -> list[Plugin]:
    """The entry points of `group`, one distribution each (the first on sys.path, as importlib.metadata)."""
    files = _entry_point_files(group)
    if files is None:
        from importlib.metadata import entry_points as metadata_entry_points

        return [Plugin(ep.name, ep.value, ep.dist.name if ep.dist else "?")
                for ep in metadata_entry_points(group=group)]
    found: list[Plugin] = []
    for distribution, text in files:
        found += [Plugin(name, value, distribution) for name, value in _section(text, group)]
    return found


def declared_entry_point_groups(*groups: str) -> set[str]:
    """Which of `groups` some distribution on sys.path may declare entry points for (conservatively)."""
    found: set[str] = set()
    for group in groups:
        files = _entry_point_files(group)
        if files is None or files:
            found.add(group)
    return found


def _entry_point_files(group: str) -> list[tuple[str, str]] | None:
    """(distribution, entry_points.txt text) of each distribution that mentions `group`; None when
    this look cannot be sure to see every distribution."""
    files = _scan(tuple(sys.path), tuple(map(id, sys.meta_path)))
    if files is None:
        return None
    needle = group.encode()
    return [(distribution, text.decode("utf-8", "replace")) for distribution, text in files if needle in text]


@lru_cache(maxsize=4)
def _scan(path: tuple[Any, ...], finders: tuple[int, ...]) -> tuple[tuple[str, bytes], ...] | None:
    """Every distribution's entry_points.txt on `path`, read once per sys.path (validate asks for three
    groups: modules, providers, pydantic's plugins)."""
    from importlib.machinery import PathFinder

    if any(getattr(finder, "find_distributions", None) is not None and finder is not PathFinder
           for finder in sys.meta_path):
        return None
    seen, found = set[str](), list[tuple[str, bytes]]()
    for entry in path:
        try:
            folder = os.fspath(entry) or "."
        except TypeError:
            return None
        if isinstance(folder, bytes) or folder.lower().endswith(".egg"):
            return None
        try:
            with os.scandir(folder) as children:
                names = sorted(child.name for child in children)
        except NotADirectoryError:
            return None  # a zip file: importlib.metadata reads distributions inside it
        except OSError:
            continue  # missing or unreadable: importlib.metadata skips it too
        for name in names:
            if not name.lower().endswith((".dist-info", ".egg-info")):
                continue
            distribution = _normalized(name.rsplit(".", 1)[0].split("-", 1)[0])
            if distribution in seen:
                continue  # importlib.metadata also takes only the first distribution of a name
            seen.add(distribution)
            try:
                with open(os.path.join(folder, name, "entry_points.txt"), "rb") as file:
                    text = file.read()
            except OSError:
                continue
            found.append((distribution, text))
    return tuple(found)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """`name = value` lines of the `[group]` section of an entry_points.txt (an INI file)."""
    pairs: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs
