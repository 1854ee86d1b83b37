"""The Job create and edit forms: fields, pickers, and validation through `JobSpec`.

Each field parses what the operator typed (JSON objects, integers, a comma-separated tag list);
`JobForm.validate` then checks the whole job with `JobSpec`, the one validation every entry point
shares, and shows each of its errors under the field it names. The secrets field is write-only:
it never renders a value, not even the one just typed when the form comes back with an error,
and a blank field keeps the stored secrets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from markupsafe import Markup
from pydantic import ValidationError
from wtforms import Form
from wtforms.fields import (
    BooleanField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Optional
from wtforms.widgets import TextInput

from connecthub.jobs.spec import JOB_FIELDS, JobSpec, JobSpecFieldError, field_errors
from connecthub.jobs.vocabulary import CollisionStrategy
from connecthub.plugins.manager import available_plugins


class DatalistInput(TextInput):
    """A text input with a browser-native list of suggestions (free text stays allowed)."""

    def __init__(self, options: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self.options = options

    def __call__(self, field: Any, **kwargs: Any) -> Markup:
        list_id = f"{field.id}-options"
        kwargs.setdefault("list", list_id)
        kwargs.setdefault("autocomplete", "off")
        options = Markup("").join(
            Markup('<option value="{}"></option>').format(option) for option in self.options()
        )
        return Markup('{}<datalist id="{}">{}</datalist>').format(
            super().__call__(field, **kwargs), list_id, options
        )


@lru_cache(maxsize=1)
def timezone_names() -> list[str]:
    return sorted(available_timezones())


def _parse_json_object(text: str, example: str) -> dict[str, Any]:
    """The object in `text`; ValueError saying what is wrong (never quoting the text)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object, e.g. {example}")
    return value


class JSONObjectField(TextAreaField):
    """A JSON object typed as text; blank means {}."""

    example = '{"name": "Mars"}'

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return json.dumps(self.data or {}, indent=2, ensure_ascii=False)

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist:
            return
        text = str(valuelist[0]).strip()
        self.data = _parse_json_object(text, self.example) if text else {}


class SecretJSONField(TextAreaField):
    """A JSON object of secrets, typed in plaintext and never rendered back.

    Blank means "keep the stored secrets" (data None); `{}` removes them.
    """

    example = '{"token": "..."}'

    def _value(self) -> str:
        return ""

    def process_data(self, value: Any) -> None:
        self.data = None  # the stored value is a Fernet token: never loaded into the form

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist:
            return
        text = str(valuelist[0]).strip()
        self.data = _parse_json_object(text, self.example) if text else None


class TagListField(StringField):
    """Tags typed as a comma-separated list."""

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return ", ".join(self.data or [])

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist:
            self.data = [tag.strip() for tag in str(valuelist[0]).split(",") if tag.strip()]


def spec_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """The JobSpec input for the form's `data` (blank optional texts become None)."""
    values = {name: data.get(name) for name in JOB_FIELDS}
    for name in ("name", "description"):
        values[name] = (values[name] or "").strip() or None
    values["public_cfg"] = values["public_cfg"] if values["public_cfg"] is not None else {}
    values["tags"] = values["tags"] or []
    return values


def build_spec(data: Mapping[str, Any]) -> JobSpec:
    """The validated JobSpec of a submitted form (raises as JobSpec does)."""
    return JobSpec.model_validate(spec_input(data))


_text = {"class": "form-control"}
_number = {"class": "form-control", "inputmode": "numeric"}


class JobForm(Form):
    """The Job form as created; `validate` checks the whole job with JobSpec."""

    id = StringField(
        "Id",
        [InputRequired()],
        render_kw={**_text, "placeholder": "example.hello"},
        description="Unique, fixed once created: letters, digits, '.', '-' and '_'.",
    )
    name = StringField(
        "Name", [Optional()], render_kw=_text, description="Shown in lists; defaults to the id."
    )
    description = TextAreaField("Description", [Optional()], render_kw={**_text, "rows": 2})
    handler_path = StringField(
        "Handler",
        [InputRequired()],
        widget=DatalistInput(available_plugins),
        render_kw={**_text, "placeholder": "extensions.example.job:ExampleJob"},
        description="module:Class of a BaseJob; pick an installed plugin or type a path.",
    )
    cron_expr = StringField(
        "Cron",
        [InputRequired()],
        render_kw={**_text, "placeholder": "*/5 * * * *"},
        description="5 fields: minute hour day-of-month month day-of-week, or @hourly, @daily...",
    )
    timezone = StringField(
        "Timezone",
        [InputRequired()],
        default="UTC",
        widget=DatalistInput(timezone_names),
        render_kw=_text,
        description="IANA name the cron is read in, e.g. UTC or Europe/Berlin.",
    )
    enabled = BooleanField(
        "Enabled",
        default=True,
        render_kw={"class": "form-check-input"},
        description="A disabled job keeps its deployment with the schedule paused.",
    )
    public_cfg = JSONObjectField(
        "Parameters (public_cfg)",
        render_kw={**_text, "rows": 4, "spellcheck": "false"},
        description="JSON object passed to the job as params; stored in plaintext.",
    )
    secret_cfg = SecretJSONField(
        "Secrets (secret_cfg)",
        render_kw={
            **_text, "rows": 3, "spellcheck": "false", "autocomplete": "off",
            "placeholder": SecretJSONField.example,
        },
        description="JSON object, encrypted on save and never shown again (if the form comes "
        "back with an error, type it again). When editing: blank keeps the stored secrets, "
        "{} removes them.",
    )
    timeout_seconds = IntegerField(
        "Timeout (seconds)", [Optional()], render_kw=_number, description="Blank: no timeout."
    )
    max_retries = IntegerField("Retries", [InputRequired()], default=0, render_kw=_number)
    retry_delay_seconds = IntegerField(
        "Retry delay (seconds)", [InputRequired()], default=60, render_kw=_number
    )
    concurrency_limit = IntegerField(
        "Concurrent runs",
        [Optional()],
        default=1,
        render_kw=_number,
        description="How many runs of this job may overlap; blank: no limit.",
    )
    collision_strategy = SelectField(
        "When a run is still going",
        choices=[
            (CollisionStrategy.ENQUEUE.value, "Queue the new run"),
            (CollisionStrategy.CANCEL_NEW.value, "Cancel the new run"),
        ],
        default=CollisionStrategy.ENQUEUE.value,
        render_kw={"class": "form-select"},
    )
    tags = TagListField("Tags", render_kw=_text, description="Comma-separated.")

    def validate(self, extra_validators: Mapping[str, Any] | None = None) -> bool:
        valid = super().validate(extra_validators)
        try:
            build_spec(self.data)
        except (ValidationError, JobSpecFieldError) as error:
            for name, message in field_errors(error).items():
                self._show_error(name, message)
            return False
        return valid

    def _show_error(self, name: str, message: str) -> None:
        field = self._fields.get(name)
        if field is None or isinstance(field, HiddenField):
            field = self._fields["name"] if name == "id" else self._fields["handler_path"]
            message = f"{name}: {message}"
        if not field.errors:  # a field's own parse error came first and says more
            field.errors = [message]


class JobEditForm(JobForm):
    # The id is the page's; it rides along so the whole job validates as it does on create.
    id = HiddenField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secret_cfg.render_kw = {
            **self.secret_cfg.render_kw, "placeholder": "Blank keeps the stored secrets"
        }
