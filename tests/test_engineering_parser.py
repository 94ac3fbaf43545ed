"""The answer parser over the shapes real models answer in: files found, everything else reported, nothing guessed."""

from __future__ import annotations

import textwrap

import pytest

from orchestrai.modules.engineering.parser import label_path, parse_answer

MAIN = 'print("hi")\n'


def files_of(answer: str) -> dict[str, str]:
    return {f.path: f.content for f in parse_answer(textwrap.dedent(answer)).files}


@pytest.mark.parametrize("label", [
    "main.py",
    "main.py:",
    "**main.py**",
    "**main.py:**",
    "`main.py`",
    "**`main.py`**",
    "### main.py",
    "## `main.py`",
    "#### 1. `main.py` — the entry point",
    "File: main.py",
    "**File:** `main.py`",
    "Filename: main.py",
    "- `main.py` (entry point)",
])
def test_a_path_on_its_own_line_before_the_block_labels_it(label: str) -> None:
    answer = f"Here is the code.\n\n{label}\n```python\nprint(\"hi\")\n```\n\nRun it with python."
    parsed = parse_answer(answer)
    assert [(f.path, f.content, f.found_by) for f in parsed.files] == [("main.py", MAIN, "label")]
    assert parsed.notes == [] and parsed.refused == []


@pytest.mark.parametrize("info", ["python main.py", "main.py", 'python title="main.py"', "python:main.py",
                                  "py file=main.py"])
def test_a_path_in_the_fence_info_string_labels_it(info: str) -> None:
    parsed = parse_answer(f"Sure!\n```{info}\nprint(\"hi\")\n```\n")
    assert [(f.path, f.content, f.found_by) for f in parsed.files] == [("main.py", MAIN, "info")]


def test_multi_file_answer_with_prose_between_blocks_and_a_blank_line_after_labels() -> None:
    answer = """
        I'll split the tool into two modules.

        **converter.py**

        ```python
        def c_to_f(c):
            return c * 9 / 5 + 32
        ```

        The CLI lives here:

        File: `main.py`
        ```python
        from converter import c_to_f
        print(c_to_f(100))
        ```

        ### requirements.txt
        ```text
        ```

        That's all — run `python main.py`.
        """
    found = files_of(answer)
    assert list(found) == ["converter.py", "main.py", "requirements.txt"]
    assert found["converter.py"] == "def c_to_f(c):\n    return c * 9 / 5 + 32\n"
    assert found["main.py"].startswith("from converter import c_to_f\n")
    assert found["requirements.txt"] == ""


def test_blocks_indented_inside_a_numbered_list_are_dedented() -> None:
    answer = "1. Create `app/cli.py`\n2. **app/cli.py**\n\n   ```python\n   def run():\n       return 1\n   ```\n"
    assert files_of(answer) == {"app/cli.py": "def run():\n    return 1\n"}


def test_first_line_marker_comment_labels_a_block_and_stays_in_the_file() -> None:
    answer = "```python\n# File: utils/math.py\nX = 1\n```\n```js\n// filename: web/app.js\nlet x = 1;\n```"
    found = files_of(answer)
    assert found == {"utils/math.py": "# File: utils/math.py\nX = 1\n",
                     "web/app.js": "// filename: web/app.js\nlet x = 1;\n"}


def test_markdown_file_in_a_longer_fence_keeps_its_inner_blocks() -> None:
    answer = "File: README.md\n````markdown\n# Tool\n\n```bash\npython main.py 100\n```\n````\n"
    assert files_of(answer) == {"README.md": "# Tool\n\n```bash\npython main.py 100\n```\n"}


def test_tilde_fences_and_crlf_line_endings() -> None:
    answer = "main.py\r\n~~~python\r\nprint('a')\r\n```not a close```\r\n~~~\r\n"
    assert files_of(answer) == {"main.py": "print('a')\n```not a close```\n"}


def test_unlabelled_blocks_are_reported_not_guessed() -> None:
    answer = "Install it:\n```bash\npip install -r requirements.txt\n```\nAnd the code:\n```python\nprint(1)\n```\n"
    parsed = parse_answer(answer)
    assert parsed.files == []
    assert parsed.notes == ["the code block at line 2 (bash, 1 lines) has no file name; ignored",
                            "the code block at line 6 (python, 1 lines) has no file name; ignored"]


def test_prose_mentioning_a_file_is_not_a_label() -> None:
    # "Here's how `main.py` handles errors:" may introduce an excerpt; writing it would truncate main.py.
    parsed = parse_answer("Here's how `main.py` handles errors:\n```python\ntry:\n    x()\nexcept E: pass\n```\n")
    assert parsed.files == [] and "has no file name" in parsed.notes[0]
    assert label_path("Here's how `main.py` handles errors:") is None
    assert label_path("Run the tests with:") is None and label_path("Python 3.11") is None


def test_nested_fence_with_the_same_length_is_refused_and_later_files_still_parse() -> None:
    answer = textwrap.dedent("""
        File: README.md
        ```markdown
        # Tool
        ```bash
        python main.py
        ```
        Done.
        ```

        File: main.py
        ```python
        print("ok")
        ```
        """)
    parsed = parse_answer(answer)
    assert [f.path for f in parsed.files] == ["main.py"]
    assert parsed.files[0].content == 'print("ok")\n'
    [refusal] = parsed.refused
    assert refusal.path == "README.md"
    assert "holds another block with the same fence (line 5)" in refusal.reason and "````" in refusal.reason


def test_block_never_closed_is_refused_as_cut_short() -> None:
    cut = parse_answer("File: main.py\n```python\nprint('a')\n")  # the answer hit max_tokens
    assert cut.files == [] and cut.refused[0].path == "main.py" and "never closed" in cut.refused[0].reason
    # main.py's block is left open: util.py's labelled opening fence is content by Markdown's rules, so
    # main.py swallows util.py and never closes. Neither is guessed at.
    parsed = parse_answer("File: main.py\n```python\nprint('a')\n\nFile: util.py\n```python\nx = 1\n```\n")
    assert parsed.files == []
    assert [r.path for r in parsed.refused] == ["main.py"] and "never closed" in parsed.refused[0].reason


def test_the_same_path_twice_keeps_the_later_copy_and_says_so() -> None:
    parsed = parse_answer("main.py\n```python\nold = 1\n```\nmain.py\n```python\nnew = 2\n```\n")
    assert [(f.path, f.content) for f in parsed.files] == [("main.py", "new = 2\n")]
    assert parsed.notes == ["main.py is given twice (lines 2 and 6); the later one is used"]


def test_hostile_paths_are_returned_as_written_for_the_writer_to_refuse() -> None:
    answer = "File: ../x.py\n```python\nA\n```\nFile: /tmp/x.py\n```python\nB\n```\n```python ~/.bashrc.py\nC\n```\n"
    assert list(files_of(answer)) == ["../x.py", "/tmp/x.py", "~/.bashrc.py"]


def test_extensionless_well_known_names_and_dotfiles() -> None:
    answer = "Dockerfile\n```dockerfile\nFROM python:3.11\n```\n`.gitignore`\n```\n__pycache__/\n```\n"
    assert files_of(answer) == {"Dockerfile": "FROM python:3.11\n", ".gitignore": "__pycache__/\n"}


def test_dunder_file_names_survive_emphasis_stripping() -> None:
    assert label_path("__init__.py") == "__init__.py"
    assert label_path("**pkg/__init__.py**") == "pkg/__init__.py"
    assert label_path("`__main__.py`:") == "__main__.py"
