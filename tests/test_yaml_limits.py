"""YAML that would expand without bound (alias bombs, deep nesting) is refused at once with its line;
ordinary anchors, aliases and merge keys keep working."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import write
from test_cli import assert_no_traceback, cli

from orchestrai.project import Project
from orchestrai.yamllimits import MAX_ALIAS_VALUES, MAX_DEPTH
from orchestrai.yamlsrc import parse_yaml

# "Billion laughs": 9 strings, then 8 levels of 9 aliases each of the level before (9**9 strings).
LEVELS = "abcdefghi"
BOMB = (f'a: &a [{", ".join(["lol"] * 9)}]\n'
        + "".join(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
                  for prev, name in zip(LEVELS, LEVELS[1:], strict=False))
        + "pipeline: [*i]\n")


def test_the_bomb_is_ten_lines() -> None:
    assert len(BOMB.splitlines()) == 10


def test_validate_refuses_an_alias_bomb_at_once(project: Path) -> None:
    write(project / "bomb.yml", BOMB)

    proc = cli(project, "validate", "bomb.yml", timeout=20)  # the unbounded reader ran > 60 s and took ~5 GB

    assert proc.returncode == 2, proc.stderr
    assert_no_traceback(proc)
    first, hint = proc.stderr.splitlines()[:2]
    # Level f (line 6) is the first whose aliases add more than the bound: 9 of *e, 66,430 values each.
    assert first == f"bomb.yml:6: alias *e makes the aliases expand to more than {MAX_ALIAS_VALUES:,} values " \
                    "(an alias bomb?)", proc.stderr
    assert hint.strip().startswith("hint: write the values out")


def test_the_config_reader_is_bounded_too(project: Path) -> None:
    write(project / "config.yml", BOMB.replace("pipeline: [*i]", "x_bomb: [*i]"))
    write(project / "p.yml", "pipeline:\n  - {module: start_module, output_name: request}\n")

    proc = cli(project, "validate", "p.yml", timeout=20)

    assert proc.returncode == 2, proc.stderr
    assert_no_traceback(proc)
    assert proc.stderr.startswith("config.yml:6: alias *e makes the aliases expand"), proc.stderr


def test_deep_nesting_is_refused_with_its_line_with_or_without_anchors() -> None:
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    for text in (f"a: 1\nb: {deep}\n", f"a: &x 1\nb: {deep}\n"):  # the fast reader, and the node tree's
        doc, problems = parse_yaml(text, "p.yml")
        assert doc is None
        assert [(p.line, p.message) for p in problems] == [(2, f"values nest more than {MAX_DEPTH} levels deep")]


def test_nesting_reached_through_aliases_counts() -> None:
    half = MAX_DEPTH // 2 + 2
    text = f"a: &a {'[' * half}1{']' * half}\nb: {'[' * half}*a{']' * half}\n"

    doc, problems = parse_yaml(text, "p.yml")

    assert doc is None and [(p.line, p.message) for p in problems] == [
        (2, f"values nest more than {MAX_DEPTH} levels deep")]


def test_nesting_up_to_the_bound_is_read_by_both_readers() -> None:
    lists = MAX_DEPTH - 1  # under the top-level mapping: MAX_DEPTH levels of collections
    for text in (f"a: {'[' * lists}1{']' * lists}\n", f"a: &x {'[' * lists}1{']' * lists}\nb: *x\n"):
        doc, problems = parse_yaml(text, "p.yml")
        assert problems == [] and doc is not None
        deeper = text.replace("[", "[[", 1).replace("]", "]]", 1)
        assert [p.line for p in parse_yaml(deeper, "p.yml")[1]] == [1]


def test_many_ordinary_aliases_are_fine() -> None:
    steps = "".join(f"  - {{module: translator, inputs: [request], output_name: out{i}, model_config: *m}}\n"
                    for i in range(2000))
    text = "defaults: &m {model: gpt-4o-mini, temperature: 0.2, max_tokens: 100}\npipeline:\n" + steps

    doc, problems = parse_yaml(text, "p.yml")

    assert problems == [] and doc is not None
    assert doc.data["pipeline"][1999]["model_config"] == {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 100}


def test_anchors_aliases_and_merge_keys_in_a_pipeline(project: Path) -> None:
    write(project / "p.yml", """
        defaults: &defaults {model: gpt-4o-mini, temperature: 0.2}
        pipeline:
          - {module: start_module, output_name: request}
          - module: translator
            inputs: [request]
            output_name: spanish
            supplement: Spanish
            model_config: &short {max_tokens: 100, temperature: 0.9}
          - module: translator
            inputs: [request]
            output_name: french
            supplement: French
            model_config: {<<: [*short, *defaults], seed: 3}
          - module: translator
            inputs: [request]
            output_name: german
            supplement: German
            model_config:
              <<: *defaults
              temperature: 0.5
          - module: translator
            inputs: [request]
            output_name: dutch
            supplement: Dutch
            model_config: *defaults
        """)

    graph = Project.open(None).load("p.yml")

    settings = {step.id: step.model_settings for step in graph.pipeline.steps}
    # An earlier merged mapping wins over a later one; keys written in the mapping win over both.
    assert settings["french"] == {"model": "gpt-4o-mini", "temperature": 0.9, "max_tokens": 100, "seed": 3,
                                  "provider": "openai"}
    assert settings["german"] == {"model": "gpt-4o-mini", "temperature": 0.5, "provider": "openai"}
    assert settings["dutch"] == {"model": "gpt-4o-mini", "temperature": 0.2, "provider": "openai"}
    assert "<<" not in str(settings)


def test_a_merged_mistake_is_reported_where_it_is_written() -> None:
    text = textwrap.dedent("""
        base: &base
          model: m
          temprature: 1
        step:
          <<: *base
          seed: 2
        """).lstrip("\n")

    doc, problems = parse_yaml(text, "p.yml")

    assert problems == [] and doc is not None
    assert doc.data["step"] == {"model": "m", "temprature": 1, "seed": 2}
    assert doc.line_of(("step", "temprature")) == 3 and doc.line_of(("step", "seed")) == 6


def test_merging_something_else_than_a_mapping_is_a_problem() -> None:
    doc, problems = parse_yaml("a: &a 1\nb: {<<: *a, c: 2}\n", "p.yml")

    assert doc is not None
    assert [(p.line, p.message) for p in problems] == [(2, "`<<` (merge) needs a mapping or a list of mappings")]
