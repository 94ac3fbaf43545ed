"""`run --from-run RUN --only STEP`: one step again, its inputs as a stored run gave them.

The pipeline is cut down to STEP and the steps it depends on; those are taken from the stored
run's log whatever changed since (that is the point: the prompt of STEP is being edited, its
inputs stay put), and STEP alone runs. Steps after STEP are left out, so exactly STEP's calls
are made.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import InputError
from ..pipeline.graph import PipelineGraph
from .resume import ResumeSource, Reuse


@dataclasses.dataclass
class OnlySource(ResumeSource):
    """Every step from the log except `only`, which always runs."""

    only: str = ""

    def check(self, step_id: str, fingerprint: str, inputs: dict[str, Any]) -> Reuse:
        if step_id == self.only:
            return Reuse(False, reason="--only runs it")
        done, output = self.completed_output(step_id)
        return Reuse(True, output=output) if done else Reuse(False, reason="it did not complete in the stored run")


def only_step(graph: PipelineGraph, source: ResumeSource, name: str) -> tuple[PipelineGraph, OnlySource]:
    """The pipeline cut down to step `name` (an id or an output name) and what it needs, and its source."""
    step_id = name if name in graph.steps else graph.producers.get(name)
    if step_id is None:
        known = ", ".join(step.id for step in graph.pipeline.steps)
        raise InputError(f"--only {name!r}: the pipeline has no such step", hint=f"its steps: {known}")
    needed = {s for s in graph.steps if step_id in graph.descendants(s)}
    missing = [s for s in sorted(needed, key=lambda s: graph.steps[s].index)
               if not source.completed_output(s)[0]]
    if missing:
        raise InputError(f"--only {step_id!r}: run {source.run_id} has no completed output of "
                         f"{', '.join(map(repr, missing))}, which it needs",
                         hint="run the whole pipeline once, then use that run with --from-run")
    keep = needed | {step_id}
    pipeline = dataclasses.replace(graph.pipeline, steps=tuple(s for s in graph.pipeline.steps if s.id in keep))
    only = OnlySource(source.run_id, source.path, source.pipeline_path, source.steps, only=step_id)
    return PipelineGraph(pipeline), only
