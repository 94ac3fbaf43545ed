"""YAML with lines: the fast event reader gives exactly what the node tree gives, for every kind of input."""

from __future__ import annotations

import textwrap

import pytest

from orchestrai.yamlsrc import _parse_nodes, parse_yaml

SAMPLES = {
    "pipeline": """
        name: demo
        defaults: {model: gpt-4o-mini, temperature: 0.2}
        pipeline:
          - {module: start_module, inputs: [], output_name: request}
          - module: translator
            inputs: [request]
            output_name: spanish
            supplement: "Spanish: ${NAME}"
            model_config:
              max_tokens: 800
              seed: 7
              stop: ["\\n\\n", '##']
          - {module: scrutinizer, inputs: [request, spanish], output_name: review, critical: false}
        """,
    "scalars": """
        ints: [1, -2, 0x1F, 0o17, 1_000]
        floats: [1.5, -0.0, .inf, .nan, 1e3]
        bools: [true, False, yes, no, on, off]
        nulls: [null, ~, ]
        strings: ['1', "true", plain text, "", '']
        dates: [2024-01-02, 2024-01-02T03:04:05Z]
        keys: {1: int, true: bool, null: none, 1.5: float, "q": quoted}
        block: |
          line one
          line two
        folded: >
          folded
          text
        env: ${HOME_DIR_FOR_TEST}/x ${UNSET_FOR_TEST:-fallback}
        whole: ${UNSET_FOR_TEST}
        merge_like: {<<: 1, =: 2}
        """,
    "duplicates": """
        a: 1
        b: {x: 1, x: 2}
        a: 3
        """,
    "nested": """
        - [1, [2, [3, {a: [4]}]]]
        - {}
        - []
        -
          - deep: {deeper: {deepest: [a, b]}}
        """,
    "anchors": """
        base: &base {model: m, temperature: 0.1}
        step: *base
        merged: {<<: *base, seed: 1}
        """,
    "tags": """
        a: !!str 123
        b: !!float 1
        c: ! 12
        """,
    "complex_key": """
        ? [a, b]
        : c
        """,
    "two_documents": "a: 1\n---\nb: 2\n",
    "syntax_error": "a: [1, 2\nb: 3\n",
    "bad_indent": "a:\n  b: 1\n c: 2\n",
    "empty": "",
    "comments_only": "# nothing here\n",
    "explicit_empty_document": "---\n",
    "scalar_document": "just text\n",
    "list_document": "- a\n- 1\n",
}


@pytest.mark.parametrize("expand_env", [False, True])
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_event_reader_matches_the_node_tree(name: str, expand_env: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAME", "Ana")
    monkeypatch.setenv("HOME_DIR_FOR_TEST", "/home/ana")
    monkeypatch.delenv("UNSET_FOR_TEST", raising=False)
    text = textwrap.dedent(SAMPLES[name]).lstrip("\n")
    if name == "complex_key":  # a list as a key is unhashable: both readers fail alike (not a pipeline's YAML)
        for read in (parse_yaml, _parse_nodes):
            with pytest.raises(TypeError):
                read(text, "p.yml", expand_env=expand_env)
        return
    fast_doc, fast_problems = parse_yaml(text, "p.yml", expand_env=expand_env)
    tree_doc, tree_problems = _parse_nodes(text, "p.yml", expand_env=expand_env)
    assert fast_problems == tree_problems
    if tree_doc is None:
        assert fast_doc is None
        return
    assert fast_doc is not None
    assert repr(fast_doc.data) == repr(tree_doc.data)  # repr: nan != nan, and key order matters
    assert fast_doc.lines == tree_doc.lines
    assert fast_doc.unset_env == tree_doc.unset_env


def test_duplicate_keys_are_reported_at_their_lines() -> None:
    _, problems = parse_yaml(textwrap.dedent(SAMPLES["duplicates"]).lstrip("\n"), "p.yml")
    assert [(p.line, p.message) for p in problems] == [(2, "duplicate key 'x'"), (3, "duplicate key 'a'")]
