"""The workloads as orchestrai projects: a config, one prompt file (a chameleon module) and a pipeline YAML.

Every node is a real chameleon step (jinja2 system prompt, user message from its inputs, one
`ctx.complete` through retries, budget, rate limits and accounting) answered by the `echo` provider,
or, for `http`, by the openai provider talking to the loopback server. The fan-out's source is a
Python module in the project's `modules/` (`bench_items`), which returns the list the other engines'
source returns: the list is then the engine's input as it is, and the run measures the fan-out, not
JSON parsing and schema validation of 10,000 items (an echo step with an array `output_schema` would
also make all items equal, so a mixed-up order could not be seen).
"""

from __future__ import annotations

import json
from pathlib import Path

from workloads import ITEM_TEXT, LOOP_ID, MODEL, Workload

SOURCE_MODULE = f'''"""The fan-out benchmark's source: `options.count` items."""


async def run(ctx, inputs):
    return [{ITEM_TEXT!r}.format(i=i) for i in range(int(ctx.step.options["count"]))]
'''

PROMPT = "You echo your input. (benchmark step {{ step }})\n"


def write_project(root: Path, workload: Workload, *, base_url: str | None = None) -> tuple[Path, Path]:
    """Write config.yml, system_prompts/bench_echo.md and pipeline.yml under `root`; returns (config, pipeline)."""
    (root / "system_prompts").mkdir(parents=True, exist_ok=True)
    (root / "system_prompts" / "bench_echo.md").write_text(PROMPT, encoding="utf-8")
    if base_url is None:
        provider = f"echo: {{type: echo, latency_s: {workload.latency_s}}}"
        default = f"{{provider: echo, model: {MODEL}}}"
    else:  # the openai SDK against the loopback server, which answers like echo after its latency
        provider = f"loopback: {{type: openai, base_url: '{base_url}', api_key: bench-key, timeout_s: 60}}"
        default = f"{{provider: loopback, model: {MODEL}}}"
    config = root / "config.yml"
    config.write_text(f"providers:\n  {provider}\ndefault_model_config: {default}\n"
                      "log_dir: logs\ncache_dir: cache\n", encoding="utf-8")
    if workload.shape == "fanout":
        (root / "modules").mkdir(exist_ok=True)
        (root / "modules" / "bench_items.py").write_text(SOURCE_MODULE, encoding="utf-8")
    pipeline = root / "pipeline.yml"
    pipeline.write_text(pipeline_yaml(workload), encoding="utf-8")
    return config, pipeline


def pipeline_yaml(workload: Workload) -> str:
    """One flow-style mapping per step, in dependency order."""
    if workload.shape == "fanout":
        return fanout_yaml(workload)
    if workload.shape == "loop":
        return loop_yaml(workload)
    lines = [f"name: {workload.name}", "pipeline:"]
    for node in workload.nodes:
        supplement = f", supplement: {json.dumps(node.supplement)}" if node.supplement else ""
        lines.append(f"  - {{module: bench_echo, inputs: [{', '.join(node.parents)}], "
                     f"output_name: {node.name}{supplement}}}")
    return "\n".join(lines) + "\n"


def fanout_yaml(workload: Workload) -> str:
    """source -> `foreach:` step (the item under its parent's name) -> sink on the list of results."""
    source, item, sink = workload.nodes
    return (f"name: {workload.name}\npipeline:\n"
            f"  - {{module: bench_items, options: {{count: {workload.repeat}}}, output_name: {source.name}}}\n"
            f"  - {{module: bench_echo, foreach: {source.name}, as: {item.parents[0]}, output_name: {item.name}}}\n"
            f"  - {{module: bench_echo, inputs: [{item.name}], output_name: {sink.name}}}\n")


def loop_yaml(workload: Workload) -> str:
    """A `loop:` of the body; each body input is an earlier body output or (optional) the previous iteration's.

    `until` never holds (the echo never answers "stop"), so all `max_iterations` run, and it is
    still evaluated after every iteration as a real loop's would be.
    """
    made: set[str] = set()
    lines = [f"name: {workload.name}", "pipeline:", "  - loop:", f"      max_iterations: {workload.repeat}",
             f"      until: \"{workload.nodes[-1].name} == 'stop'\"", "      steps:"]
    for node in workload.nodes:
        now = [p for p in node.parents if p in made]
        later = [p for p in node.parents if p not in made]  # the previous iteration's: optional
        optional = f", optional_inputs: [{', '.join(later)}]" if later else ""
        supplement = f", supplement: {json.dumps(node.supplement)}" if node.supplement else ""
        lines.append(f"        - {{module: bench_echo, inputs: [{', '.join(now)}]{optional}, "
                     f"output_name: {node.name}{supplement}}}")
        made.add(node.name)
    lines += [f"    id: {LOOP_ID}", "    output_name: final"]
    return "\n".join(lines) + "\n"
