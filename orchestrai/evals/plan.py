"""Read an eval file into runnable variants and tests, or every problem with it as `path:line`."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import Problem
from ..project import Project
from ..schema_errors import problems_from_validation_error
from ..yamlsrc import YamlDoc, load_yaml
from .assertions import check_assertion_spec
from .dataset import EvalTest, build_tests
from .judge import Judges
from .spec import EvalSpec, VariantSpec
from .variants import Variant, build_variant


@dataclass
class EvalPlan:
    path: Path
    spec: EvalSpec
    project: Project
    variants: list[Variant]
    tests: list[EvalTest]
    judges: Judges
    scratch: Path  # variants' prompt overlays and the judges' pipelines; removed by close()
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def load_eval(path: Path, project: Project) -> tuple[EvalPlan | None, list[Problem]]:
    """The plan (None when there are problems) and every problem found, sorted by line."""
    doc, problems = load_yaml(path)
    if doc is None or problems:
        return None, problems
    if not isinstance(doc.data, dict):
        return None, [doc.problem((), "an eval file is a mapping with pipeline:, tests: or data:, and assert:")]
    try:
        spec = EvalSpec.model_validate(doc.data)
    except ValidationError as exc:
        return None, problems_from_validation_error(exc, doc, what="eval", model=EvalSpec)
    scratch = Path(tempfile.mkdtemp(prefix="orchestrai-eval-"))
    plan = EvalPlan(path, spec, project, [], [], Judges(project, scratch / "judges", spec.judge), scratch)
    try:
        _fill(plan, doc)
    except BaseException:
        plan.close()
        raise
    if plan.problems:
        plan.close()
        return None, sorted(plan.problems, key=lambda p: (p.path, p.line or 0))
    return plan, []


def _fill(plan: EvalPlan, doc: YamlDoc) -> None:
    spec, base = plan.spec, plan.path.parent
    if spec.pipeline is None and not spec.pipelines and not any(v.pipeline for v in _all_variants(spec)):
        plan.problems.append(doc.problem((), "the eval names no pipeline", "add `pipeline: path/to/pipeline.yml`"))
        return
    if not spec.tests and spec.data is None:
        plan.problems.append(doc.problem((), "the eval has no tests", "add `tests:` or `data: file.jsonl`"))
    data_path = None
    if spec.data is not None:
        data_path = base / spec.data
        if data_path.suffix.lower() not in (".jsonl", ".csv") or not data_path.is_file():
            plan.problems.append(doc.problem(("data",), f"data file {spec.data!r} not found (a .jsonl or .csv file)",
                                             f"paths are relative to {base}"))
            data_path = None
    names = set()
    for number, (variant_spec, locs) in enumerate(_combinations(spec)):
        if variant_spec.name in names:
            plan.problems.append(doc.problem(locs[-1], f"two variants are named {variant_spec.name!r}"))
            continue
        names.add(variant_spec.name)
        variant, found = build_variant(variant_spec, locs, doc, plan.path, spec, plan.project,
                                       plan.scratch / f"variant-{number}")
        plan.problems += found
        if variant is not None:
            plan.variants.append(variant)
    plan.tests = build_tests(spec, data_path, _shown(data_path) if data_path else "")
    checked: set[tuple[Any, ...]] = set()
    for test in plan.tests:
        for assertion, loc in test.assertions:
            if loc not in checked:
                checked.add(loc)
                plan.problems += check_assertion_spec(assertion, loc, doc, base, plan.variants, plan.judges.check)


def _all_variants(spec: EvalSpec) -> list[VariantSpec]:
    return [*spec.variants, *(v for dimension in spec.matrix.values() for v in dimension)]


def _combinations(spec: EvalSpec) -> list[tuple[VariantSpec, list[tuple[Any, ...]]]]:
    """Every variant to run: one of each dimension (pipelines, variants, each matrix entry) combined."""
    dimensions: list[list[tuple[VariantSpec, tuple[Any, ...]]]] = []
    if spec.pipelines:
        dimensions.append([(_variant(Path(p).stem, p), ("pipelines", n))
                           for n, p in enumerate(spec.pipelines)])
    if spec.variants:
        dimensions.append([(v, ("variants", n)) for n, v in enumerate(spec.variants)])
    for key, entries in spec.matrix.items():
        if entries:
            dimensions.append([(v, ("matrix", key, n)) for n, v in enumerate(entries)])
    if not dimensions:
        return [(_variant("default"), [()])]
    return [(_merge([v for v, _ in combo]), [loc for _, loc in combo]) for combo in itertools.product(*dimensions)]


def _variant(name: str, pipeline: str | None = None) -> VariantSpec:
    """A variant made here, not read: its name joins validated ones ("literal/echo"), so it is not checked again."""
    return VariantSpec.model_construct(name=name, pipeline=pipeline, settings={}, steps={}, prompts={}, threshold=None)


def _merge(parts: list[VariantSpec]) -> VariantSpec:
    """One variant made of one per dimension: later dimensions win key by key."""
    merged = _variant("/".join(p.name for p in parts))
    for part in parts:
        merged.pipeline = part.pipeline or merged.pipeline
        merged.settings = {**merged.settings, **part.settings}
        merged.steps = {**merged.steps, **part.steps}
        merged.prompts = {**merged.prompts, **part.prompts}
        merged.threshold = part.threshold if part.threshold is not None else merged.threshold
    return merged


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_eval(path: Path, project: Project) -> tuple[str | None, list[Problem]]:
    """For `validate`: a one-line summary of a valid eval file, or its problems."""
    plan, problems = load_eval(path, project)
    if plan is None:
        return None, problems
    try:
        asserts = sum(len(t.assertions) for t in plan.tests)
        return (f"eval: {len(plan.variants)} variant(s) x {len(plan.tests)} test(s), repeat {plan.spec.repeat}, "
                f"{asserts} assertion(s)"), []
    finally:
        plan.close()

