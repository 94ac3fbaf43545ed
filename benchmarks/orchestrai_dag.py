"""The DAGs as orchestrai projects: a config, one prompt file (a chameleon module) and a pipeline YAML.

Every node is a real chameleon step (jinja2 system prompt, user message from its inputs, one
`ctx.complete` through retries, budget, rate limits and accounting) answered by the `echo` provider,
or, for `http`, by the openai provider talking to the loopback server.
"""

from __future__ import annotations

import json
from pathlib import Path

from workloads import MODEL, Workload

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
    pipeline = root / "pipeline.yml"
    pipeline.write_text(pipeline_yaml(workload), encoding="utf-8")
    return config, pipeline


def pipeline_yaml(workload: Workload) -> str:
    """One flow-style mapping per step, in dependency order."""
    lines = [f"name: {workload.name}", "pipeline:"]
    for node in workload.nodes:
        supplement = f", supplement: {json.dumps(node.supplement)}" if node.supplement else ""
        lines.append(f"  - {{module: bench_echo, inputs: [{', '.join(node.parents)}], "
                     f"output_name: {node.name}{supplement}}}")
    return "\n".join(lines) + "\n"
