"""The engineering pipeline: plan, write, run, debug, modify and document a codebase, safely.

The pieces, each usable on its own:

- `parser`: files out of a model's Markdown answer (labelled code blocks), with notes on what it ignored.
- `writer`: writes files into a workspace and nowhere else (no absolute paths, `..`, symlinks,
  non-regular files; file-count and byte limits), reporting every refusal.
- `view`: a condensed view of a codebase that fits a token budget.
- `sandbox`: runs a command with a timeout, resource limits, closed stdin, capped output and an
  environment built from an allow-list (no API keys).
- `venv`: the workspace's own virtual environment, where requirements.txt is installed.
- `workspace`: the codebase dict steps pass on, where the workspace is, consent to execute.
- `settings`: the step `options:`; `prompting`: the messages sent to the model.
- `loop`: the run-fix-run loop shared by the debugger and modify_codebase.
- `engineer`, `debugger` (also `modify_codebase`), `readme`: the modules, registered in `modules/base.py`.
"""
