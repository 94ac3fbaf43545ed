"""`validate` knows foreach, when, loops and sub-pipelines: every bad case, at once, with path:line and a hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import write

from orchestrai.project import Project

PLAN = ("{module: planner, inputs: [request], output_name: plan, output_schema: {type: object, properties: "
        "{topics: {type: array, items: {type: string}}, title: {type: string}}, required: [topics], "
        "additionalProperties: false}}")


def setup(project: Path) -> None:
    for name in ("planner", "researcher", "writer", "critic"):
        write(project / "system_prompts" / f"{name}.md", f"You are a {name}.\n")
    write(project / "system_prompts" / "item_user.md", "Research {{ topic }}.\n")


def problems_of(path: Path) -> str:
    graph, problems = Project.open(None).check(path)
    assert graph is None, "expected problems"
    return "\n".join(str(p) for p in problems)


def test_a_valid_deciding_pipeline_and_its_summary(project: Path) -> None:
    setup(project)
    write(project / "sub.yml", """
        pipeline:
          - {module: start_module, output_name: subject}
          - {module: researcher, inputs: [subject], output_name: notes}
        """)
    path = write(project / "ok.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {PLAN}
          - {{module: item_user, foreach: plan.topics, as: topic, max_concurrency: 2, output_name: findings}}
          - {{module: writer, inputs: [findings], when: "plan.title == 'x'", output_name: maybe}}
          - loop:
              max_iterations: 2
              until: "review | length > 3"
              steps:
                - {{module: writer, inputs: [request], optional_inputs: [review], output_name: draft}}
                - {{module: critic, inputs: [draft], output_name: review}}
            output_name: final
          - {{pipeline: sub.yml, foreach: plan.topics, as: topic, with: {{subject: topic}}, output_name: research}}
        """)
    graph, problems = Project.open(None).check(path)
    assert problems == [] and graph is not None
    text = str(graph.summary())
    assert text.endswith("2 fan-outs, 1 condition, 1 loop, 1 sub-pipeline"), text
    loop = graph.steps["final"]
    assert loop.inputs == ("request",)  # what the body reads from outside


def test_foreach_and_references_checked_against_the_producer_schema(project: Path) -> None:
    setup(project)
    path = write(project / "bad.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {PLAN}
          - {{module: researcher, foreach: plan.title, output_name: a}}
          - {{module: researcher, foreach: plan.topcs, output_name: b}}
          - {{module: researcher, foreach: plam.topics, output_name: c}}
          - {{module: researcher, inputs: [request], when: "plan.titel == 'x'", output_name: d}}
          - {{module: researcher, inputs: [request], when: "nobody > 1", output_name: e}}
          - {{module: researcher, inputs: [request], when: "plan.title ==", output_name: f}}
        """)
    text = problems_of(path)
    assert "bad.yml:4: step 'a': foreach plan.title is 'string' in the producer's output_schema, not an array" in text
    assert "bad.yml:5: step 'b': foreach plan has no field 'topcs' in the schema (did you mean 'topics'?)" in text
    assert "bad.yml:6: step 'c' foreach reads 'plam', which no step produces\n  hint: did you mean 'plan'?" in text
    assert "bad.yml:7: step 'd': when: plan has no field 'titel' in the schema (did you mean 'title'?)" in text
    assert "bad.yml:8: step 'e' when reads 'nobody', which no step produces" in text
    assert "bad.yml:9: step 'f': when: 'plan.title ==' does not parse" in text


def test_loop_problems(project: Path) -> None:
    setup(project)
    path = write(project / "loops.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - loop:
              until: "review == 'ok'"
              steps:
                - {module: writer, inputs: [request], output_name: d1}
            output_name: first
          - loop:
              max_iterations: 3
              until: "reviw == 'ok'"
              steps:
                - {module: writer, inputs: [request, review], output_name: draft}
                - {module: critic, inputs: [draft], output_name: review}
            output: drafts
            output_name: second
          - loop:
              max_iterations: 2
              steps:
                - {module: writer, inputs: [draft], output_name: other}
            output_name: third
          - {module: critic, inputs: [review], output_name: outside}
        """)
    text = problems_of(path)
    assert "loops.yml:3: missing required key 'pipeline.1.loop.max_iterations'" in text
    assert ("loops.yml:12: step 'draft' in loop 'second' reads 'review', produced later in the body" in text
            and "list 'review' under optional_inputs" in text)
    assert "loops.yml:10: step 'second' until reads 'reviw', which no step produces\n  hint: did you mean 'review'?" \
        in text
    assert "loops.yml:14: loop 'second': 'drafts' is not an output of its body\n  hint: did you mean 'draft'?" in text
    assert "loops.yml:19: step 'other' needs 'draft', which exists only inside loop 'second'" in text
    assert "loops.yml:21: step 'outside' needs 'review', which exists only inside loop 'second'" in text


def test_sub_pipeline_problems(project: Path) -> None:
    setup(project)
    write(project / "a.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {pipeline: b.yml, inputs: [request], output_name: from_b}
        """)
    write(project / "b.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {pipeline: a.yml, inputs: [request], output_name: from_a}
        """)
    write(project / "sub.yml", """
        pipeline:
          - {module: start_module, output_name: subject}
          - {module: researcher, inputs: [subject], output_name: notes}
        """)
    write(project / "broken.yml", """
        pipeline:
          - {module: nosuch, output_name: x}
        """)
    path = write(project / "main.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {pipeline: missing.yml, inputs: [request], output_name: m}
          - {pipeline: a.yml, inputs: [request], output_name: cyc}
          - {pipeline: sub.yml, inputs: [request], output_name: unbound}
          - {pipeline: sub.yml, inputs: [request], with: {subject: request, extra: request}, output: nots,
             output_name: wrong}
          - {pipeline: broken.yml, output_name: br}
          - {pipeline: /etc/passwd.yml, output_name: abs}
          - {module: writer, pipeline: sub.yml, output_name: both}
        """)
    text = problems_of(path)
    assert "main.yml:3: step 'm': pipeline file 'missing.yml' not found" in text
    assert "b.yml:3: step 'from_a': sub-pipelines form a cycle: a.yml -> b.yml -> a.yml" in text
    assert "main.yml:4: step 'cyc': sub-pipeline a.yml has problems" in text
    assert "main.yml:5: step 'unbound': sub-pipeline sub.yml needs input 'subject', and 'subject' is not one of" in text
    assert "main.yml:6: step 'wrong': the sub-pipeline has no input 'extra'" in text
    assert "main.yml:6: step 'wrong': the sub-pipeline has no output 'nots'\n  hint: did you mean 'notes'?" in text
    assert "broken.yml:2: step 'x': unknown module 'nosuch'" in text
    assert "main.yml:8: step 'br': sub-pipeline broken.yml has problems" in text
    assert "main.yml:9: step 'abs': pipeline path '/etc/passwd.yml' is absolute" in text
    assert "main.yml:10: step 'both' needs exactly one of `module:` and `pipeline:`" in text


def test_keys_that_need_foreach_and_item_name_clashes(project: Path) -> None:
    setup(project)
    path = write(project / "keys.yml", f"""
        pipeline:
          - {{module: start_module, output_name: request}}
          - {PLAN}
          - {{module: researcher, inputs: [request], max_concurrency: 2, output_name: a}}
          - {{module: researcher, inputs: [request], foreach: plan.topics, as: request, output_name: b}}
          - {{module: item_user, foreach: plan.topics, output_name: c}}
        """)
    text = problems_of(path)
    assert "keys.yml:4: step 'a': as, max_concurrency and join apply only to a foreach step" in text
    assert "keys.yml:5: step 'b': the item name 'request' is also one of its inputs" in text
    assert "keys.yml:6: step 'c': prompt item_user.md uses {{ topic }}, which is not one of the step's inputs" in text


def test_cli_validate_exits_2_without_a_traceback(project: Path) -> None:
    setup(project)
    path = write(project / "bad.yml", """
        pipeline:
          - {module: start_module, output_name: request}
          - {module: researcher, foreach: nothing.items, output_name: a}
          - loop: {max_iterations: 0, steps: []}
            output_name: l
        """)
    done = subprocess.run([sys.executable, "-m", "orchestrai", "validate", str(path)], cwd=project,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert "bad.yml:3: step 'a' foreach reads 'nothing', which no step produces" in done.stderr + done.stdout
    assert "bad.yml:4:" in done.stderr + done.stdout


def test_schema_command_covers_the_new_keys() -> None:
    from orchestrai.pipeline.spec import pipeline_json_schema

    schema = pipeline_json_schema()
    for key in ('"foreach"', '"when"', '"max_concurrency"', '"join"', '"max_iterations"', '"until"', '"with"',
                '"on_exhausted"', '"as"'):
        assert key in schema, key
