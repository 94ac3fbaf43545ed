"""One planner answer, judged: parsed, turned into the YAML that would be written, and validated.

The answer is data, never code. It becomes YAML text (keys in a readable order, nothing evaluated),
written to a temporary file beside the target, so relative paths resolve as they will, and checked
by the full validator (`check_pipeline`: schema, modules, data flow, output schemas, sub-pipelines).
On top of that, a plan may not hold paths outside the project, URLs or Python file names in a step's
`options`, may not run the file it replaces, and the prompt modules it creates (`--create-modules`)
must be new, well-named and used. Every problem is reported at its line of the YAML to be written.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from . import schemas
from .errors import Problem
from .modules.base import ModuleRegistry
from .modules.front_matter import render_front_matter
from .names import MODULE_NAME_PATTERN, MODULE_NAME_RULE, is_module_name
from .pipeline.graph import PipelineGraph
from .pipeline.loader import check_pipeline
from .project import Project
from .yamlsrc import YamlDoc, parse_yaml

NEW_MODULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": MODULE_NAME_PATTERN, "description": "The new module's name."},
        "description": {"type": "string", "minLength": 1, "description": "One sentence: what it does."},
        "inputs": {"type": "array", "items": {"type": "string"}, "description": "The input names it reads."},
        "output_schema": {"type": ["object", "null"], "description": "A JSON Schema of its answer, or null."},
        "prompt": {"type": "string", "minLength": 1, "description": "Its system prompt (a Jinja2 template)."},
    },
    "required": ["name", "description", "inputs", "prompt"],
    "additionalProperties": False,
}

TOP_ORDER = ("name", "description", "defaults", "budget_usd", "pipeline")
STEP_ORDER = ("module", "pipeline", "id", "inputs", "optional_inputs", "output_name", "supplement", "with",
              "output", "when", "foreach", "as", "max_concurrency", "join", "output_schema", "output_retries",
              "model_config", "options", "critical", "priority", "retry", "timeout_s", "fallback_models",
              "max_cost_usd", "cache")
LOOP_ORDER = ("loop", "id", "output_name", "output", "when", "critical", "priority")
LOOP_BODY_ORDER = ("max_iterations", "until", "on_exhausted", "steps")


@dataclass(frozen=True)
class NewModule:
    """A prompt module the planner asks to create (written to system_prompts/<name>.md with the plan)."""

    name: str
    description: str
    inputs: tuple[str, ...]
    output_schema: dict[str, Any] | None
    prompt: str

    def file_text(self) -> str:
        prompt = self.prompt if self.prompt.endswith("\n") else self.prompt + "\n"
        return render_front_matter(self.description, list(self.inputs), self.output_schema) + prompt


@dataclass
class Candidate:
    """One answer as it would be written, with every problem found (none: it may be written)."""

    yaml_text: str
    modules: list[NewModule] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    graph: PipelineGraph | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.graph is not None


@dataclass
class Judge:
    """Judges answers for one plan: the project, where the file goes, and whether modules may be created."""

    project: Project
    target: Path
    create_modules: bool
    header: str = ""  # comment lines written above the pipeline

    @property
    def prompt_dir(self) -> Path:
        return prompt_dir(self.project)

    def __call__(self, answer: str) -> Candidate:
        value, problem = schemas.parse_answer(answer)
        shown = display(self.target)
        if problem is not None:
            return Candidate("", problems=[Problem(shown, None, f"the answer is not JSON: {problem}",
                                                   "answer with one JSON object and nothing else")])
        data, raw_modules = value, []
        if self.create_modules and isinstance(value, dict) and isinstance(value.get("pipeline"), dict):
            data, raw_modules = value["pipeline"], value.get("modules", [])
        text = self.header + dump_yaml(ordered(data))
        modules, problems = self._modules(raw_modules, shown)
        doc, _ = parse_yaml(text, shown)
        if doc is not None:
            problems += plan_rules(doc, self.target)
            problems += self._module_use(doc, modules)
        graph, found = self._validate(text, modules)
        return Candidate(text, modules, [*problems, *found], graph)

    def _modules(self, raw: Any, shown: str) -> tuple[list[NewModule], list[Problem]]:
        issue = schemas.validate(raw, {"type": "array", "items": NEW_MODULE_SCHEMA})
        if issue is not None:
            return [], [Problem(shown, None, f"modules at {issue.json_path.replace('$', '$.modules', 1)}: "
                                f"{issue.message}", "each new module: name, description, inputs, prompt")]
        modules, problems, seen = [], [], set()
        for entry in raw:
            name = entry["name"]
            where = f"new module {name!r}"
            if not is_module_name(name):
                problems.append(Problem(shown, None, f"{where}: {MODULE_NAME_RULE}"))
            elif name in seen:
                problems.append(Problem(shown, None, f"{where} is created twice", "create each module once"))
            elif self.project.registry.resolve(name) is not None or self._prompt_file_exists(name):
                problems.append(Problem(shown, None, f"{where} already exists in the catalog",
                                        f"use {name!r} as it is, or give the new module another name"))
            else:
                modules.append(NewModule(name, " ".join(entry["description"].split()), tuple(entry["inputs"]),
                                         entry.get("output_schema"), entry["prompt"]))
            seen.add(name)
        return modules, problems

    def _prompt_file_exists(self, name: str) -> bool:
        return any((self.prompt_dir / f"{name}{suffix}").exists() for suffix in (".md", ".txt"))

    def _module_use(self, doc: YamlDoc, modules: list[NewModule]) -> list[Problem]:
        used = {step.get("module") for _, step in steps_of(doc.data)}
        return [Problem(doc.path, None, f"new module {m.name!r} is created but no step uses it",
                        "use it in a step, or leave it out of modules") for m in modules if m.name not in used]

    def _validate(self, text: str, modules: list[NewModule]) -> tuple[PipelineGraph | None, list[Problem]]:
        """check_pipeline on the text in a temporary file beside the target (new prompts in a temporary folder)."""
        folder = self.target.parent
        made = [parent for parent in (folder, *folder.parents) if not parent.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{self.target.stem}.plan-{secrets.token_hex(4)}.yml"
        extra = Path(tempfile.mkdtemp(prefix="orchestrai-plan-")).resolve() if modules else None
        renames = {display(temp): display(self.target), temp.name: self.target.name}
        try:
            registry = self.project.registry
            if extra is not None:
                for module in modules:
                    written = extra / "system_prompts" / f"{module.name}.md"
                    written.parent.mkdir(exist_ok=True)
                    written.write_text(module.file_text(), encoding="utf-8")
                    renames[str(written)] = display(self.prompt_dir / written.name)
                registry = ModuleRegistry([*registry.project_dirs, extra])
            temp.write_text(text, encoding="utf-8")
            graph, problems = check_pipeline(temp, self.project.config, registry)
        finally:
            temp.unlink(missing_ok=True)
            if extra is not None:
                shutil.rmtree(extra, ignore_errors=True)
            for parent in made:  # a folder made only for the check: the plan may never be written
                if parent.exists() and not any(parent.iterdir()):
                    parent.rmdir()
        return graph, [_renamed(problem, renames) for problem in problems]


def prompt_dir(project: Project) -> Path:
    """Where created prompts go: the project's own system_prompts/ (beside the config)."""
    return project.registry.project_dirs[0] / "system_prompts"


def plan_rules(doc: YamlDoc, target: Path) -> list[Problem]:
    """What the validator allows but a model's plan may not: options naming paths, URLs or Python files,
    and a sub-pipeline that is the file the plan replaces."""
    problems = []
    for loc, step in steps_of(doc.data):
        options = step.get("options")
        for key_path, value in _strings(options, (*loc, "options")):
            reason = _unsafe_option(value)
            if reason:
                problems.append(doc.problem(key_path, f"step {step.get('id') or step.get('output_name')!r}: "
                                            f"options may not hold {reason} ({value!r})",
                                            "a plan is data: set such options yourself after reviewing it"))
        sub = step.get("pipeline")
        if isinstance(sub, str) and (target.parent / sub).resolve() == target.resolve():
            problems.append(doc.problem((*loc, "pipeline"), "a plan cannot run the file it is written to",
                                        "use another pipeline from the catalog"))
    return problems


def steps_of(data: Any) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(location, step) for every step mapping, loop bodies included."""
    items = data.get("pipeline") if isinstance(data, dict) else None
    for index, step in enumerate(items if isinstance(items, list) else []):
        if not isinstance(step, dict):
            continue
        loc: tuple[Any, ...] = ("pipeline", index)
        loop = step.get("loop")
        body = loop.get("steps") if isinstance(loop, dict) else None
        if isinstance(body, list):
            yield from (((*loc, "loop", "steps", n), inner) for n, inner in enumerate(body) if isinstance(inner, dict))
        else:
            yield loc, step


def _strings(value: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings(inner, (*loc, key))
    elif isinstance(value, list):
        for position, inner in enumerate(value):
            yield from _strings(inner, (*loc, position))


def _unsafe_option(value: str) -> str | None:
    text = value.strip()
    if "://" in text:
        return "a URL"
    if text.startswith(("/", "~", "\\")) or (len(text) > 1 and text[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(text.replace("\\", "/")).parts:
        return "a path outside the project"
    if text.lower().endswith((".py", ".pyc", ".pyw")):
        return "a Python file name"
    return None


def _renamed(problem: Problem, renames: dict[str, str]) -> Problem:
    """A validator problem with the temporary files' names replaced by the names they will be written as."""
    path, message, hint = renames.get(problem.path, problem.path), problem.message, problem.hint
    for temporary, final in renames.items():
        message = message.replace(temporary, final)
        hint = hint.replace(temporary, final) if hint else hint
    return replace(problem, path=path, message=message, hint=hint)


def display(path: Path) -> str:
    """As the validator shows paths: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def ordered(data: Any) -> Any:
    """The pipeline with keys in the order a person reads them, and null values left out (they mean unset)."""
    if not isinstance(data, dict):
        return data
    top = _order(data, TOP_ORDER)
    if isinstance(top.get("pipeline"), list):
        top["pipeline"] = [_step(item) for item in top["pipeline"]]
    return top


def _step(item: Any) -> Any:
    if not isinstance(item, dict):
        return item
    if "loop" not in item:
        return _order(item, STEP_ORDER)
    entry = _order(item, LOOP_ORDER)
    if isinstance(entry["loop"], dict):
        entry["loop"] = _order(entry["loop"], LOOP_BODY_ORDER)
        if isinstance(entry["loop"].get("steps"), list):
            entry["loop"]["steps"] = [_step(inner) for inner in entry["loop"]["steps"]]
    return entry


def _order(mapping: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    known = [key for key in order if key in mapping]
    rest = [key for key in mapping if key not in order]
    return {key: mapping[key] for key in [*known, *rest] if mapping[key] is not None}


class _PlanDumper(yaml.SafeDumper):
    """Plain YAML: short lists of scalars inline, multi-line text as `|` blocks, never an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    inline = all(isinstance(v, (str, int, float, bool)) and "\n" not in str(v) for v in value) and \
        sum(len(str(v)) + 2 for v in value) < 80
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=inline)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_PlanDumper.add_representer(list, _represent_list)
_PlanDumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_PlanDumper, sort_keys=False, allow_unicode=True, width=110,
                     default_flow_style=False)
