"""The chameleon module: one LLM call whose system prompt is a template file.

The file may start with YAML front matter (description, inputs, output_schema; see front_matter.py):
it is never part of the prompt, and template line numbers stay those of the file.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import Message, Problem, PromptError, Step, StepContext
from .front_matter import FrontMatter, split_front_matter

if TYPE_CHECKING:
    import jinja2
    import jinja2.nodes

BUILTIN_VARIABLES = frozenset({"supplement", "inputs", "step"})


class ChameleonModule:
    """Renders `system_prompts/<name>` with the step's inputs and asks the step's model once."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    @cached_property
    def front_matter(self) -> FrontMatter:
        """What the file's front matter says (empty when it has none or cannot be read)."""
        try:
            return self._split[0]
        except (OSError, UnicodeDecodeError):
            return FrontMatter()

    @property
    def description(self) -> str | None:
        return self.front_matter.description

    @property
    def inputs(self) -> tuple[str, ...] | None:
        return self.front_matter.inputs

    @property
    def output_schema(self) -> dict[str, Any] | None:
        """The front matter's schema: used (and checked by validate) for steps that set none."""
        return self.front_matter.output_schema

    async def run(self, ctx: StepContext, inputs: dict[str, Any]) -> Any:
        """The model's answer: its text, or with the step's `output_schema` the parsed JSON value."""
        messages = self.messages(inputs, supplement=ctx.step.supplement, step_id=ctx.step.id)
        if ctx.step.output_schema is not None:
            return await ctx.complete_structured(messages)
        completion = await ctx.complete(messages)
        return completion.text

    def messages(self, inputs: dict[str, Any], *, supplement: str | None, step_id: str) -> list[Message]:
        """The system and user messages this module sends for these inputs."""
        system = self.render(inputs, supplement=supplement, step_id=step_id)
        return [Message("system", system), Message("user", user_message(inputs, supplement))]

    def render(self, inputs: dict[str, Any], *, supplement: str | None, step_id: str) -> str:
        """The system prompt for one step; a template error names the prompt file and line."""
        import jinja2

        variables = {**inputs, "inputs": inputs, "supplement": supplement, "step": step_id}
        try:
            return self._render(variables)
        except jinja2.TemplateError as exc:
            line = _template_line(exc, self.path)
            where = f"{self.path}:{line}" if line else str(self.path)
            raise PromptError(f"{where}: prompt template error in step {step_id!r}: {exc}",
                              hint="the template can use supplement, inputs and the names of the step's inputs") \
                from None

    def variables(self) -> frozenset[str]:
        """The names the prompt reads (besides supplement, inputs and step): its inputs, e.g. as a tool's arguments."""
        return self._template_variables - BUILTIN_VARIABLES

    def check(self, step: Step) -> list[Problem]:
        """Template problems found without running: syntax errors and variables the step does not provide."""
        import jinja2

        try:
            variables = self._template_variables
        except jinja2.TemplateSyntaxError as exc:
            return [Problem(str(self.path), exc.lineno, f"prompt template syntax error: {exc.message}",
                            f"used by step {step.id!r} at {step.location}")]
        except OSError as exc:
            return [Problem(str(self.path), None, f"cannot read prompt: {exc}")]
        problems = list(self.front_matter.problems)
        given = set(step.all_inputs)
        if step.control is not None and step.control.foreach is not None:  # the current item, by its `as:` name
            given.add(step.control.item_name)
        unknown = sorted(variables - BUILTIN_VARIABLES - given)
        return problems + [Problem.at(step.location, f"step {step.id!r}: prompt {self.path.name} uses "
                                      f"{{{{ {name} }}}}, which is not one of the step's inputs",
                                      f"add {name!r} to the step's inputs, or remove it from the prompt")
                           for name in unknown]

    def _render(self, variables: dict[str, Any]) -> str:
        """What `Template.render(variables)` returns, at a fraction of its cost.

        A prompt that is only text and `{{ name }}` is joined directly: jinja2 compiles exactly that
        to `str(value)` per name (autoescape is off), so the result is the same, without building a
        template context (most of a step's templating cost). Anything else, or a name the step does
        not provide (a jinja2 global, or an undefined name and its error), goes through jinja2.
        """
        parts = self._plain_parts
        if parts is not None:
            try:
                return "".join([str(variables[name]) if name is not None else text or "" for text, name in parts])
            except KeyError:
                pass
        # render() copies the template's globals (a ChainMap, slow to iterate) into every new
        # context; a plain dict of them, copied once per module, gives the context the same variables.
        template = self._template
        context = template.new_context({**self._template_globals, **variables}, shared=True)
        try:
            return str(template.environment.concat(template.root_render_func(context)))
        except Exception:
            template.environment.handle_exception()  # as render() does: template lines in the traceback
            raise  # pragma: no cover - handle_exception always raises

    @cached_property
    def _template_globals(self) -> dict[str, Any]:
        return dict(self._template.globals)

    @cached_property
    def _template_variables(self) -> frozenset[str]:
        """The variables the template uses; parsed once, as a pipeline may use one prompt in thousands of steps."""
        import jinja2.meta

        return frozenset(jinja2.meta.find_undeclared_variables(self._tree))

    @cached_property
    def _split(self) -> tuple[FrontMatter, str]:
        return split_front_matter(self.path.read_text(encoding="utf-8"), str(self.path))

    @cached_property
    def _tree(self) -> jinja2.nodes.Template:
        return self._environment.parse(self._split[1])

    @cached_property
    def _plain_parts(self) -> tuple[tuple[str | None, str | None], ...] | None:
        """(text, None) and (None, name) pieces when the prompt is only text and `{{ name }}`; else None."""
        from jinja2 import TemplateSyntaxError, nodes

        try:
            tree = self._tree  # parsed, not compiled: a plain prompt never needs jinja2's compiled code
        except TemplateSyntaxError:
            self._template  # noqa: B018 - raises the PromptError that names the prompt file and line
            raise
        parts: list[tuple[str | None, str | None]] = []
        for statement in tree.body:
            if not isinstance(statement, nodes.Output):
                return None
            for node in statement.nodes:
                if isinstance(node, nodes.TemplateData):
                    parts.append((node.data, None))
                elif isinstance(node, nodes.Name) and node.ctx == "load":
                    parts.append((None, node.name))
                else:
                    return None
        return tuple(parts)

    @cached_property
    def _environment(self) -> jinja2.Environment:
        import jinja2
        import jinja2.sandbox

        # Sandboxed: a prompt is text a user may have copied from anywhere; it must not reach Python.
        return jinja2.sandbox.SandboxedEnvironment(
            loader=_prompt_loader(str(self.path.parent)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )

    @cached_property
    def _template(self) -> jinja2.Template:
        import jinja2

        try:
            return self._environment.get_template(self.path.name)
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"{self.path}:{exc.lineno}: prompt template syntax error: {exc.message}") from None


def _prompt_loader_class() -> type[jinja2.FileSystemLoader]:
    import jinja2

    class PromptLoader(jinja2.FileSystemLoader):
        """Prompt files with their front matter turned into a comment of as many lines (included files too)."""

        def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Any]:
            source, filename, uptodate = super().get_source(environment, template)
            return split_front_matter(source, filename)[1], filename, uptodate

    return PromptLoader


def _prompt_loader(folder: str) -> jinja2.FileSystemLoader:
    """A loader of `folder`'s prompt files; its class is built on first use (jinja2 is imported late)."""
    global _LOADER_CLASS
    if _LOADER_CLASS is None:
        _LOADER_CLASS = _prompt_loader_class()
    return _LOADER_CLASS(folder)


_LOADER_CLASS: type[jinja2.FileSystemLoader] | None = None


def user_message(inputs: dict[str, Any], supplement: str | None) -> str:
    """Each input under its name as a heading, then the supplement."""
    parts = [f"## {name}\n{_as_text(value)}" for name, value in inputs.items()]
    if supplement:
        parts.append(f"## supplement\n{supplement}")
    return "\n\n".join(parts)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _template_line(exc: Exception, path: Path) -> int | None:
    """The prompt line an error happened on: jinja2 puts the template's frames in the traceback."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int) and lineno:
        return lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line

