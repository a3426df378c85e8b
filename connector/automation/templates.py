"""Templates in automations: Jinja2 in a sandboxed, immutable environment.

A string holding `{{` or `{%` in an automation is a template. It renders with
`trigger`, `steps` (outputs of earlier actions by step id), `automation` and
`now()` in scope. A template that is one expression keeps the value's type
(`"{{ trigger.generation.duration }}"` is a float, a list stays a list); one
that mixes text and expressions is a string. A template error fails the run
that rendered it with a clear message and never reaches the runtime.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.nativetypes import NativeCodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment

from connector.errors import ConnectorError
from connector.redaction import scrub


class TemplateError(ConnectorError):
    """A template failed to compile or to render; the message says which and why."""


def _concat(values: Iterable[Any]) -> Any:
    # One expression keeps its type; unlike jinja2's native_concat, strings are
    # never literal-evaluated (an id "123" must stay a string).
    head = list(values)
    if len(head) == 1:
        value = head[0]
        if isinstance(value, Undefined):
            str(value)  # StrictUndefined raises UndefinedError naming what is missing
        return value
    return "".join(str(v) for v in chain(head))


class _CodeGenerator(NativeCodeGenerator):
    # Fold only literal text: a folded expression would reach us as text ("90").
    def _output_child_to_const(self, node: nodes.Expr, frame: Any, finalize: Any) -> Any:
        if not isinstance(node, nodes.TemplateData):
            raise nodes.Impossible()
        return super()._output_child_to_const(node, frame, finalize)


class _Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    concat = staticmethod(_concat)


def _now() -> datetime:
    return datetime.now(UTC)


_ENV = _Environment(undefined=StrictUndefined, autoescape=False)
_ENV.globals["now"] = _now


def is_template(text: object) -> bool:
    """Whether a config value is a template string."""
    return isinstance(text, str) and ("{{" in text or "{%" in text)


class Template:
    """A compiled template string from an automation."""

    __slots__ = ("_compiled", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            self._compiled = _ENV.from_string(source)
        except TemplateSyntaxError as err:
            raise TemplateError(f"template {source!r} does not compile: {err.message}") from err

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    @property
    def variables(self) -> set[str]:
        """Top-level names the template reads (e.g. {"trigger", "steps"})."""
        parsed = _ENV.parse(self.source)
        return {n.name for n in parsed.find_all(nodes.Name) if n.ctx == "load"}

    def render(self, variables: Mapping[str, Any]) -> Any:
        """Render with `variables`; raises TemplateError saying what went wrong."""
        try:
            return self._compiled.render(**variables)
        except UndefinedError as err:
            raise TemplateError(f"template {self.source!r}: {err.message}") from err
        except SecurityError as err:
            raise TemplateError(f"template {self.source!r} is not allowed: {err}") from err
        except Exception as err:  # any error inside user code fails the run, not us
            raise TemplateError(
                f"template {self.source!r} failed: {type(err).__name__}: {err}"
            ) from err


def compile_templates(value: Any) -> Any:
    """Turn every template string inside a config value into a `Template`."""
    if is_template(value):
        return Template(value)
    if isinstance(value, list):
        return [compile_templates(item) for item in value]
    if isinstance(value, dict):
        return {key: compile_templates(item) for key, item in value.items()}
    return value


def render(value: Any, variables: Mapping[str, Any]) -> Any:
    """Render every `Template` inside a config value; other values pass through.

    What a template renders is scrubbed of registered secrets: it is made from
    event data (a provider's error text, a title) that may quote one, and it
    goes on into tags, file names, bodies and the journal. Literal values (a
    `secret:` option, a URL read with `!secret`) are left as they are.
    """
    if isinstance(value, Template):
        return scrub(value.render(variables))
    if isinstance(value, list):
        return [render(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: render(item, variables) for key, item in value.items()}
    return value


def contains_template(value: Any) -> bool:
    """Whether a config value holds a template anywhere inside it."""
    if isinstance(value, Template):
        return True
    if isinstance(value, list):
        return any(contains_template(item) for item in value)
    if isinstance(value, dict):
        return any(contains_template(item) for item in value.values())
    return False
