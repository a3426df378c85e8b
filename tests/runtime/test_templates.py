"""Templates: sandboxed Jinja2 that keeps native types and fails runs, not the runtime."""

from __future__ import annotations

import pytest

from connector.automation.templates import (
    Template,
    TemplateError,
    compile_templates,
    is_template,
    render,
)


def test_a_single_expression_keeps_its_type() -> None:
    assert Template("{{ 60 + 30 }}").render({}) == 90
    assert Template("{{ trigger.ids }}").render({"trigger": {"ids": ["a", "b"]}}) == ["a", "b"]
    assert Template("{{ x >= 60 }}").render({"x": 90.5}) is True


def test_a_numeric_looking_id_stays_a_string() -> None:
    assert Template("{{ trigger.id }}").render({"trigger": {"id": "123"}}) == "123"


def test_mixed_text_renders_to_a_string() -> None:
    assert Template("lofi {{ n }} beats").render({"n": 3}) == "lofi 3 beats"


def test_undefined_names_fail_with_the_template_in_the_message() -> None:
    with pytest.raises(TemplateError, match=r"trigger\.generation\.nope"):
        Template("{{ trigger.generation.nope }}").render({"trigger": {"generation": {}}})


def test_unsafe_attribute_access_is_refused() -> None:
    with pytest.raises(TemplateError, match="not allowed"):
        Template("{{ x.__class__.__mro__ }}").render({"x": 1})


def test_mutating_data_is_refused() -> None:
    with pytest.raises(TemplateError):
        Template("{{ items.append(1) }}").render({"items": []})


def test_errors_inside_expressions_fail_cleanly() -> None:
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        Template("{{ 1 / 0 }}").render({})


def test_syntax_errors_are_reported_at_compile_time() -> None:
    with pytest.raises(TemplateError, match="does not compile"):
        Template("{{ trigger. }}")


def test_now_is_in_scope_and_aware() -> None:
    assert Template("{{ now().tzinfo is not none }}").render({}) is True


def test_compile_and_render_walk_nested_values() -> None:
    compiled = compile_templates({"a": "{{ x }}", "b": ["plain", "{{ x * 2 }}"], "c": 5})
    assert isinstance(compiled["a"], Template)
    assert compiled["b"][0] == "plain"
    assert render(compiled, {"x": 2}) == {"a": 2, "b": ["plain", 4], "c": 5}


def test_is_template_detects_expressions_and_statements() -> None:
    assert is_template("{{ x }}")
    assert is_template("{% if x %}y{% endif %}")
    assert not is_template("plain text")
    assert not is_template(5)


def test_variables_lists_the_names_read() -> None:
    assert Template("{{ trigger.id }} {{ steps.a.id }}").variables == {"trigger", "steps"}


def test_step_outputs_answer_to_snake_case_names_like_the_trigger() -> None:
    from connector.automation.templates import Template
    from connector.dispatch.runs import template_view as _template_view

    steps = {"make": _template_view({"id": "g1", "generation": {"errorMessage": "boom"}})}
    assert Template("{{ steps.make.generation.error_message }}").render({"steps": steps}) == "boom"
    assert Template("{{ steps.make.generation.errorMessage }}").render({"steps": steps}) == "boom"
    assert Template("{{ steps.make.generation.get('nope', 'x') }}").render({"steps": steps}) == "x"
