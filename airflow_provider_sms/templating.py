"""Rendering a template field that holds phone numbers, without Airflow quoting it when it fails.

Airflow's templater logs the unrendered value of a field whose template fails (``Template: %r``,
masking registered secrets only): for a list of recipients, that is every number in the task log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.exceptions import AirflowException

if TYPE_CHECKING:
    from collections.abc import Iterable

    import jinja2
    from airflow.sdk import BaseNotifier, BaseOperator, Context

    Templater = BaseOperator | BaseNotifier  # what renders template fields


class RendersQuietly:
    """Mixed into an operator or a notifier: its ``quiet_field`` is rendered by :meth:`render_quiet`
    (by default :func:`render_field_quietly`), every other template field as Airflow renders it."""

    quiet_field: ClassVar[str]

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        others, ours = split_off(self, parent, template_fields, self.quiet_field)  # type: ignore[arg-type]
        super()._do_render_template_fields(parent, others, context, jinja_env, seen_oids)  # type: ignore[misc]
        if ours:
            self.render_quiet(context, jinja_env, seen_oids)

    def render_quiet(self, context: Context, jinja_env: jinja2.Environment, seen_oids: set[int]) -> None:
        render_field_quietly(self, self.quiet_field, context, jinja_env, seen_oids)  # type: ignore[arg-type]


def split_off(
    owner: Templater, parent: object, template_fields: Iterable[str], field: str
) -> tuple[list[str], bool]:
    """The fields to leave to Airflow's rendering, and whether ``field`` of ``owner`` is among those
    asked for (not when Airflow renders a nested object's fields, or only some fields)."""
    fields = list(template_fields)
    if parent is owner and field in fields:
        return [name for name in fields if name != field], True
    return fields, False


def render_field_quietly(
    owner: Templater, field: str, context: Context, jinja_env: jinja2.Environment, seen_oids: set[int]
) -> None:
    """Render ``owner.<field>`` in place as Airflow would (an empty value is left alone, a callable is
    called). A failure raises an error naming the field and the template engine's message with the
    numbers masked; it is not chained, because the original's message and traceback may quote the
    template."""
    from airflow_provider_sms.protocol.phones import mask_in_text

    value = getattr(owner, field)
    if _is_empty(value):  # as Airflow: an empty field is not rendered
        return
    try:
        if callable(value):
            rendered = value(context=context, jinja_env=jinja_env)
        else:
            rendered = owner.render_template(value, context, jinja_env, seen_oids)
    except Exception as exc:
        where = getattr(owner, "task_id", type(owner).__name__)
        raise AirflowException(
            f"{where}: the {field!r} template did not render: {type(exc).__name__}: "
            f"{mask_in_text(str(exc))} (the template is not shown: it may hold phone numbers)"
        ) from None
    setattr(owner, field, rendered)


def _is_empty(value: object) -> bool:
    """False for a value with no truth value (e.g. a DataFrame): Airflow renders those."""
    try:
        return not value
    except Exception:
        return False
