"""Runs sharing one set of providers, rate limiters, budget and cache (what batch and eval build on)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import write
from scripted import ScriptedProvider

from orchestrai.engine.runner import RunOptions, run_pipeline
from orchestrai.engine.shared import Shared
from orchestrai.project import Project


def test_concurrent_runs_share_one_limiter_one_budget_and_one_pool(project: Path) -> None:
    write(project / "config.yml", """
        rate_limits: {openai: {max_concurrent: 1}}
        pricing: {gpt-4o-mini: {input: 1000.0, output: 1000.0}}
        """)
    write(project / "system_prompts" / "echoer.md", "Repeat.\n")
    path = write(project / "one.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: echoer, inputs: [request], output_name: answer, model_config: {model: gpt-4o-mini}}
        """)
    proj = Project.open(project / "config.yml")
    graph = proj.load(path)
    provider = ScriptedProvider(latency_s=0.02)

    async def main() -> list[str]:
        shared = Shared.open(proj.config, budget_usd=100.0, use_cache=False, providers={"openai": provider})
        try:
            results = await asyncio.gather(*(run_pipeline(graph, proj.config, proj.registry,
                                                          RunOptions(run_inputs={"request": f"r{n}"}, shared=shared))
                                             for n in range(4)))
        finally:
            await shared.aclose()
        assert round(shared.budget.spent, 6) == round(sum(r.totals.cost_usd or 0 for r in results), 6) > 0
        return [r.status for r in results]

    assert asyncio.run(main()) == ["completed"] * 4
    assert len(provider.calls) == 4 and provider.max_in_flight == 1  # the limit held across the four runs
