"""The chameleon module: one LLM call whose system prompt is a template file."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import Message, Problem, PromptError, Step, StepContext

if TYPE_CHECKING:
    import jinja2
    import jinja2.nodes

BUILTIN_VARIABLES = frozenset({"supplement", "inputs", "step"})


class ChameleonModule:
    """Renders `system_prompts/<name>` with the step's inputs and asks the step's model once."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

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
        given = set(step.all_inputs)
        if step.control is not None and step.control.foreach is not None:  # the current item, by its `as:` name
            given.add(step.control.item_name)
        unknown = sorted(variables - BUILTIN_VARIABLES - given)
        return [Problem.at(step.location, f"step {step.id!r}: prompt {self.path.name} uses "
                           f"{{{{ {name} }}}}, which is not one of the step's inputs",
                           f"add {name!r} to the step's inputs, or remove it from the prompt") for name in unknown]

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
    def _tree(self) -> jinja2.nodes.Template:
        return self._environment.parse(self.path.read_text(encoding="utf-8"))

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
            loader=jinja2.FileSystemLoader(str(self.path.parent)),
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

