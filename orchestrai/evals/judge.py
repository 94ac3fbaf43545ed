"""llm-rubric: a judge model grades an output against a rubric, as a small pipeline of its own.

Running the judge as a pipeline gives it what every step has: the shared rate limits, budget, call
cache and retries, and a structured answer ({pass, score, reason}) checked against a schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.options import RunOptions
from ..engine.runner import run_pipeline
from ..errors import OrchestraiError
from ..modules.base import ModuleRegistry
from ..pipeline.graph import PipelineGraph
from ..pipeline.loader import check_pipeline
from .assertions import AssertionResult
from .spec import AssertionSpec

if TYPE_CHECKING:
    from ..engine.shared import Shared
    from ..project import Project

JUDGE_PROMPT = """\
You grade the output of an LLM pipeline against a rubric. Read the text under "## output" and
decide whether it satisfies the rubric under "## rubric".

Reply with only a JSON object, no other text:
{"pass": true or false, "score": a number from 0 to 1, "reason": "one sentence"}
"""
VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"pass": {"type": "boolean"}, "score": {"type": "number", "minimum": 0, "maximum": 1},
                   "reason": {"type": "string"}},
    "required": ["pass", "score", "reason"],
}


class Judges:
    """One judge pipeline per distinct judge model_config, validated before anything runs."""

    def __init__(self, project: Project, folder: Path, default: dict[str, Any] | None) -> None:
        self.project, self.folder, self.default = project, folder, default or {}
        self.graphs: dict[str, PipelineGraph] = {}
        self.registry = ModuleRegistry([folder], plugins=False)

    def settings(self, spec: AssertionSpec) -> dict[str, Any]:
        return spec.judge if spec.judge is not None else self.default

    def check(self, spec: AssertionSpec) -> list[tuple[str, str | None]]:
        """Build the judge for `spec` (once per model_config); what is wrong with it, as (message, hint)."""
        key = json.dumps(self.settings(spec), sort_keys=True, default=str)
        if key in self.graphs:
            return []
        prompts = self.folder / "system_prompts"
        prompts.mkdir(parents=True, exist_ok=True)
        (prompts / "eval_judge.md").write_text(JUDGE_PROMPT, encoding="utf-8")
        path = self.folder / f"judge-{len(self.graphs)}.yml"
        judge_step = {"module": "eval_judge", "inputs": ["output", "rubric"], "output_name": "verdict",
                      "output_schema": VERDICT_SCHEMA, "output_retries": 0}
        if self.settings(spec):
            judge_step["model_config"] = self.settings(spec)
        path.write_text(json.dumps({"name": "llm-rubric judge", "pipeline": [
            {"module": "start_module", "output_name": "output"},
            {"module": "start_module", "output_name": "rubric"}, judge_step]}), encoding="utf-8")
        graph, problems = check_pipeline(path, self.project.config, self.registry)
        if graph is None:
            return [(p.message.replace("step 'verdict': ", ""), p.hint) for p in problems]
        self.graphs[key] = graph
        return []

    async def judge(self, spec: AssertionSpec, text: str, shared: Shared, use_cache: bool) -> AssertionResult:
        """The judge's verdict on `text`; a run that fails or an answer that cannot be parsed fails the assertion."""
        graph = self.graphs[json.dumps(self.settings(spec), sort_keys=True, default=str)]
        options = RunOptions(run_inputs={"output": text, "rubric": spec.rubric}, shared=shared, use_cache=use_cache,
                             webhooks=False, otel=False)
        try:
            result = await run_pipeline(graph, self.project.config, self.registry, options)
        except OrchestraiError as exc:
            return AssertionResult(spec.type, False, 0.0, f"llm-rubric: the judge could not run: {exc.message}")
        record = next(r for r in result.records if r.id == "verdict")
        cost = result.totals.cost_usd
        if record.status not in ("completed", "cached"):
            attempts = record.details.get("output_attempts") or []
            if attempts:
                answer = str(attempts[-1].get("answer", ""))
                shown = answer if len(answer) <= 80 else answer[:80] + "..."
                message = f"llm-rubric: the judge's answer is not a verdict {{pass, score, reason}}: {shown!r}"
            else:
                message = f"llm-rubric: the judge failed: {(record.error or 'no answer').splitlines()[0]}"
            return AssertionResult(spec.type, False, 0.0, message, {"judge_cost_usd": cost})
        verdict = result.outputs["verdict"]
        score = float(verdict["score"])
        passed = bool(verdict["pass"]) and (spec.threshold is None or score >= spec.threshold)
        reason = str(verdict["reason"])
        return AssertionResult(spec.type, passed, score, f"llm-rubric (score {score:.2f}): {reason}",
                               {"verdict": bool(verdict["pass"]), "score": score, "reason": reason,
                                "judge_cost_usd": cost})
