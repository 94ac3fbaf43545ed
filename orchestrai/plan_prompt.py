"""What `orchestrai plan` asks the planner model: the answer's JSON Schema and the messages.

The answer is a pipeline file as JSON, matching the pipeline format's own JSON Schema
(`pipeline_json_schema()`); with `--create-modules` it is `{pipeline, modules}`, the schema's
definitions kept at the root where its `$ref`s point. OpenAI's strict mode does not take this schema;
the provider's conservative check sends it with `strict: false`, and the answer is validated here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .api import Message
from .catalog import Catalog
from .errors import Problem
from .pipeline.spec import pipeline_json_schema
from .plan_check import NEW_MODULE_SCHEMA, display

SYSTEM = """\
You design pipelines for orchestrai, which runs LLM pipelines written in YAML. Answer with one JSON
object matching the JSON Schema you are given: {what}. It is converted to YAML as it is, checked by
orchestrai's validator and shown to a person for review before anything runs.

How a pipeline works:
- `pipeline` is a list of steps. A step runs a `module` from the catalog (or a catalog pipeline file
  with `pipeline:` instead), lists in `inputs` the output names of the steps it needs, and names its
  own output in `output_name` (unique; letters, digits, `_`, `-`, `.`).
- Every step starts as soon as its inputs exist, so steps that do not need each other run in
  parallel: split independent work into separate steps that read the same inputs.
- The run's inputs come from `start_module` steps: `{{"module": "start_module", "inputs": [],
  "output_name": "request"}}` outputs the run input `request`. Use as few run inputs as the task needs
  (usually one, `request`).
- A prompt module gets each input under a heading `## <input name>`, then its `supplement`: extra
  instructions for that step (a language, a focus, a tone). Use `supplement` to specialise a general
  module; use `id` to tell apart several steps of the same module.
- A module's `inputs` in the catalog are the input names it expects: feed it those names (the
  outputs of earlier steps with exactly these `output_name`s, or a `start_module` of that name).
- `output_schema` (an inline JSON Schema object) makes a step answer JSON. Later steps may read its
  fields: `foreach: plan.topics` runs a step once per list item (named by `as`, default `item`);
  `when: "review.verdict == 'revise'"` runs a step only when true. A catalog module with an
  `output_schema` already answers that JSON.
- A sub-pipeline step: `pipeline: <the catalog's use_as path>`, its inputs bound by name from this
  step's `inputs` (`with: {{its_input: name_here}}` renames), `output:` picks one of its outputs.
- Leave out `model_config` unless the task names a model. Never put paths, URLs or Python file names
  in `options`.
- Use only the modules, pipelines and tools of the catalog{created}.
The file will be written as {target}. If the validator finds problems you get them back with the
YAML, line by line; then answer again with the whole corrected JSON object.
"""

CREATE = """
Creating modules: when no catalog module can do a part of the task, add a prompt module to
`modules`: `name` (letters, digits, `_`, `-`; not a catalog name), `description` (one sentence),
`inputs` (the input names its steps give it), `output_schema` (a JSON Schema object, or null) and
`prompt`: the system prompt its step's model receives, in English, saying what to do with the inputs
under their `## name` headings and what to answer. A prompt may use `{{ supplement }}`; any other
`{{ name }}` must be one of the step's inputs. Create a module only for a role no catalog module
covers, and use every module you create in a step.
"""


def plan_schema(create_modules: bool) -> dict[str, Any]:
    """The JSON Schema of the planner's answer."""
    schema: dict[str, Any] = json.loads(pipeline_json_schema())
    if not create_modules:
        return schema
    definitions = schema.pop("$defs", {})
    schema.pop("$schema", None)
    schema.pop("title", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "orchestrai plan",
            "type": "object", "properties": {"pipeline": schema, "modules": {"type": "array",
                                                                            "items": NEW_MODULE_SCHEMA}},
            "required": ["pipeline", "modules"], "additionalProperties": False, "$defs": definitions}


def messages(task: str, catalog: Catalog, target: Path, create_modules: bool) -> list[Message]:
    """The planner's system and user messages: how pipelines work, then the task and the catalog."""
    what = ("`pipeline` (the pipeline file) and `modules` (new prompt modules, often none)" if create_modules
            else "the pipeline file")
    created = " and the modules you create" if create_modules else ""
    system = SYSTEM.format(what=what, created=created, target=display(target)) + (CREATE if create_modules else "")
    listing = json.dumps(planner_catalog(catalog, target), indent=1, ensure_ascii=False)
    user = f"## task\n{task.strip()}\n\n## catalog\n```json\n{listing}\n```"
    return [Message("system", system), Message("user", user)]


def planner_catalog(catalog: Catalog, target: Path) -> dict[str, Any]:
    """The catalog as the planner sees it: no file paths of this machine; pipelines by the path to write."""
    modules = []
    for module in catalog.modules:
        if module.problem:
            continue
        entry: dict[str, Any] = {"name": module.name, "kind": module.kind, "description": module.description}
        if module.inputs is not None:
            entry["inputs"] = list(module.inputs)
        if module.output_schema is not None:
            entry["output_schema"] = module.output_schema
        modules.append(entry)
    pipelines = [{"use_as": _relative(p.path, target.parent), "name": p.name, "description": p.description,
                  "inputs": list(p.inputs), "outputs": list(p.outputs)} for p in catalog.pipelines]
    return {"modules": modules, "pipelines": pipelines, "tools": catalog.tools}


def feedback(yaml_text: str, problems: list[Problem]) -> str:
    """The user message that sends an answer's problems back, with the YAML they refer to."""
    numbered = "\n".join(f"{number:>3}  {line}" for number, line in enumerate(yaml_text.splitlines(), 1))
    listed = "\n".join(f"- {problem}".replace("\n", "\n  ") for problem in problems)
    shown = f"Your answer as YAML (line numbers on the left):\n```yaml\n{numbered}\n```\n\n" if yaml_text else ""
    return (f"{shown}orchestrai's validator found {len(problems)} problem(s):\n{listed}\n\n"
            "Fix every one and answer again with the whole corrected JSON object, nothing else.")


def _relative(path: Path, folder: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
