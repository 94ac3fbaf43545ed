"""The eval file format (pydantic): pipelines, a dataset, variants, repeats, assertions, thresholds.

Only the shape lives here; `plan.py` turns a valid file into runnable variants and tests, reporting
everything else wrong with it (missing files, unknown steps, prompts and providers) as `path:line` problems.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..policies import new_dict, new_list

VARIANT_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
# Which assertion types need which key (the rest are optional).
ASSERTION_TYPES: dict[str, str | None] = {
    "equals": "value", "contains": "value", "icontains": "value", "regex": "value", "is-json": None,
    "json-schema": "value", "python": "value", "llm-rubric": "rubric", "cost_usd_below": "value",
    "latency_s_below": "value",
}
_STRICT = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)


class AssertionSpec(BaseModel):
    """One check of a test's output."""

    model_config = _STRICT

    type: str = Field(description="equals, contains, icontains, regex, is-json, json-schema, python, llm-rubric, "
                                  "cost_usd_below or latency_s_below.")
    value: Any = Field(None, description="What to compare with; strings may use {{ var }} from the test.")
    step: str | None = Field(None, description="Check this step's output (id or output_name), not the final ones.")
    rubric: str | None = Field(None, description="llm-rubric: what a good answer does.")
    judge: dict[str, Any] | None = Field(None, description="llm-rubric: the judge's model_config (default: eval's).")
    threshold: float | None = Field(None, ge=0, le=1, description="llm-rubric/python: the lowest passing score.")


class TestSpec(BaseModel):
    """One inline test: the run inputs and its own assertions (besides the eval's `assert:`)."""

    model_config = _STRICT

    name: str | None = None
    vars: dict[str, Any] = Field(default_factory=new_dict, description="Run inputs by name.")
    assert_: list[AssertionSpec] = Field(default_factory=new_list, alias="assert")


class PromptText(BaseModel):
    model_config = _STRICT

    text: str = Field(description="The prompt's text (a system prompt template, as in system_prompts/).")


class StepOverride(BaseModel):
    model_config = _STRICT

    settings: dict[str, Any] = Field(default_factory=new_dict, alias="model_config")


class VariantSpec(BaseModel):
    """One way of running the tests; a matrix combines one variant of each dimension."""

    model_config = _STRICT

    name: str = Field(pattern=VARIANT_NAME_PATTERN)
    pipeline: str | None = Field(None, description="A whole other pipeline file (relative to the eval file).")
    settings: dict[str, Any] = Field(default_factory=new_dict, alias="model_config",
                                     description="Model settings for every model-calling step.")
    steps: dict[str, StepOverride] = Field(default_factory=new_dict,
                                           description="Model settings for single steps, by step id.")
    prompts: dict[str, str | PromptText] = Field(default_factory=new_dict,
                                                 description="A prompt module's text: a file path or {text: ...}.")
    threshold: float | None = Field(None, ge=0, le=1, description="This variant's lowest passing rate.")


class EvalSpec(BaseModel):
    """A whole eval file."""

    model_config = _STRICT

    description: str | None = None
    pipeline: str | None = Field(None, description="The pipeline file, relative to the eval file.")
    pipelines: list[str] = Field(default_factory=new_list, description="Several pipelines to compare (a dimension).")
    tests: list[TestSpec] = Field(default_factory=new_list)
    data: str | None = Field(None, description="A .jsonl or .csv file of tests, relative to the eval file.")
    vars: dict[str, str] = Field(default_factory=new_dict, description="Run input -> data column.")
    assert_: list[AssertionSpec] = Field(default_factory=new_list, alias="assert",
                                         description="Assertions for every test.")
    variants: list[VariantSpec] = Field(default_factory=new_list)
    matrix: dict[str, list[VariantSpec]] = Field(default_factory=new_dict,
                                                 description="Dimensions of variants; every combination runs.")
    judge: dict[str, Any] | None = Field(None, description="The llm-rubric judge's model_config.")
    repeat: int = Field(1, ge=1, description="Runs per test; above 1 the call cache is bypassed.")
    threshold: float = Field(1.0, ge=0, le=1, description="The lowest pass rate a variant may have.")
    concurrency: int = Field(4, ge=1, description="Test runs in flight at once.")


def looks_like_eval(text: str) -> bool:
    """Whether a YAML file's text is an eval file rather than a pipeline (which has a `pipeline:` list)."""
    if re.search(r"^(tests|variants|pipelines|matrix|data)\s*:", text, re.MULTILINE):
        return True
    return re.search(r"^pipeline\s*:[ \t]*[^\s\[#]", text, re.MULTILINE) is not None
