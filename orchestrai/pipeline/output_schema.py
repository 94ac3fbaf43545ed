"""A step's `output_schema:` at validation time: read it (inline or from a file) and check it is a JSON Schema."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import Problem
from ..schemas import SchemaIssue, schema_issues
from ..yamlsrc import YamlDoc, load_yaml, parse_yaml
from .spec import Step

SCHEMA_SUFFIXES = (".json", ".yml", ".yaml")
SCHEMA_HINT = "see https://json-schema.org/understanding-json-schema/ (draft 2020-12 unless $schema names another)"


@dataclass
class SchemaReader:
    """Reads output schemas for one pipeline file; a file used by many steps is read and checked once."""

    doc: YamlDoc  # the pipeline file
    project_dir: Path  # the config's folder
    _files: dict[Path, tuple[dict[str, Any] | None, list[Problem]]] = field(default_factory=dict)

    def read(self, loc: tuple[Any, ...], step_id: str, raw: dict[str, Any] | str) -> tuple[dict[str, Any] | None,
                                                                                          list[Problem]]:
        """The schema of the step at `loc` and the problems found; None when there is no usable schema."""
        where = (*loc, "output_schema")
        if isinstance(raw, dict):
            issues = schema_issues(raw)
            return (None if issues else raw), [
                self.doc.problem((*where, *issue.path), _invalid(step_id, issue), SCHEMA_HINT) for issue in issues]
        path, problem = self._locate(where, step_id, raw)
        if path is None:
            return None, [problem] if problem else []
        if path in self._files:  # its problems were reported for the first step that uses it
            return self._files[path][0], []
        self._files[path] = _read_file(path)  # shared by steps: its problems name no step
        return self._files[path]

    def _locate(self, where: tuple[Any, ...], step_id: str, raw: str) -> tuple[Path | None, Problem | None]:
        return locate_file(self.doc, self.project_dir, where, f"step {step_id!r}: output_schema", raw,
                           SCHEMA_SUFFIXES, "or write the schema inline, as a mapping")


def locate_file(doc: YamlDoc, project_dir: Path, where: tuple[Any, ...], what: str, raw: str,
                suffixes: tuple[str, ...], other_way: str) -> tuple[Path | None, Problem | None]:
    """The file a pipeline names (a schema, a sub-pipeline), or the problem with it.

    Relative paths only, resolving (symlinks included) inside the pipeline's folder or the project's:
    a project keeps shared files in e.g. `schemas/` beside `pipelines/`, and a pipeline (which a model
    may have written) must not read, and quote in its errors, files from elsewhere on the machine,
    nor stop working when the project is copied to another one, as an absolute path would.
    """
    given = Path(raw)
    if given.suffix.lower() not in suffixes:
        return None, doc.problem(where, f"{what} file {raw!r} must end in {', '.join(suffixes)}", other_way)
    if given.is_absolute():
        return None, doc.problem(where, f"{what} path {raw!r} is absolute",
                                 "give it relative to the pipeline file, so the project can move")
    base = Path(doc.path).resolve().parent
    path = (base / given).resolve()
    if not any(path.is_relative_to(root) for root in (base, project_dir.resolve())):
        return None, doc.problem(where, f"{what} path {raw!r} is outside the pipeline's folder and the project "
                                 "folder", "keep it inside the project")
    if not path.is_file():
        return None, doc.problem(where, f"{what} file {raw!r} not found",
                                 f"the path is relative to the pipeline file's folder ({base})")
    return path, None


def _read_file(path: Path) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A schema file's content and its problems, each at its line in that file."""
    if path.suffix.lower() == ".json":
        doc, problems = _read_json(path)
    else:
        doc, problems = load_yaml(path)
    if doc is None or problems:
        return None, problems
    issues = schema_issues(doc.data)
    if issues:
        return None, [doc.problem(issue.path, _invalid(None, issue), SCHEMA_HINT) for issue in issues]
    data: dict[str, Any] = doc.data
    return data, []


def _read_json(path: Path) -> tuple[YamlDoc | None, list[Problem]]:
    """Parsed with json (YAML 1.1 reads some JSON differently); lines from the YAML reader when it can."""
    shown = _display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [Problem(shown, exc.lineno, f"invalid JSON: {exc.msg}", "check the file with a JSON linter")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(shown, None, f"cannot read file: {exc}")]
    lines_doc, _ = parse_yaml(text, shown)
    return YamlDoc(shown, data, lines_doc.lines if lines_doc is not None else {}), []


def _invalid(step_id: str | None, issue: SchemaIssue) -> str:
    at = f" at {issue.json_path}" if issue.path else ""
    who = f"step {step_id!r}: output_schema" if step_id else "output_schema"
    return f"{who} is not a valid JSON Schema{at}: {issue.message}"


def _display_path(path: Path) -> str:
    """As yamlsrc shows paths: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def declared_schema(step: Step, module: object) -> tuple[Step, list[Problem]]:
    """`step` with the schema its module declares (`output_schema` attribute), checked like the step's own."""
    schema = getattr(module, "output_schema", None)
    issues = schema_issues(schema)
    if issues:
        problems = [Problem.at(step.location, f"module {step.module!r} (step {step.id!r}): its " +
                               _invalid(None, issue), SCHEMA_HINT) for issue in issues]
        return step, problems
    return replace(step, output_schema=dict(schema) if isinstance(schema, Mapping) else None), []
