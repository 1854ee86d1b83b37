"""The Job create and edit forms: fields, pickers, and validation through `JobSpec`.

The fields derive from `JobSpec` (`spec_form_fields`): one per JobSpec field, in its order, the
WTForms field from its type, with its default and its description as help, required when
JobSpec requires a value. `ADMIN_FIELDS` holds only what the admin adds (labels, the pickers,
the write-only secrets area, the names of the choices), so a new job field needs no edit here.

Each field parses what the operator typed (JSON objects, integers, a comma-separated tag list);
`JobForm.validate` then checks the whole job with `JobSpec`, the one validation every entry point
shares, and shows each of its errors under the field it names. The secrets field is write-only:
it never renders a value, not even the one just typed when the form comes back with an error,
and a blank field keeps the stored secrets.

When the handler's plugin declares `Params` / `Secrets` models, the form shows one typed field
per model field instead of the JSON areas (`config_fields`), and the model's errors appear under
the field they name; secrets are password fields, and on edit a blank one keeps that stored
secret (the stored ones are decrypted server-side to merge, never rendered). Choosing another
handler posts the form with LOAD_FIELDS (a small script on change; a button without
JavaScript): the form comes back with that plugin's fields and nothing is saved. A post without
the TYPED_MARKER (a script, an older page) still sends the JSON fields.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import lru_cache
from typing import Any, get_origin
from zoneinfo import available_timezones

from markupsafe import Markup
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from wtforms import Field, Form
from wtforms.fields import (
    BooleanField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import InputRequired, Optional, StopValidation
from wtforms.widgets import TextInput

from connecthub.app.admin import queries
from connecthub.app.admin.config_fields import (
    PARAMS,
    SECRETS,
    ConfigField,
    collect,
    config_fields,
    field_of,
    initial,
    unwrap_optional,
)
from connecthub.jobs.base import JobConfigError
from connecthub.jobs.spec import (
    JOB_FIELDS,
    JobSpec,
    JobSpecFieldError,
    config_problems,
    field_errors,
)
from connecthub.jobs.vocabulary import CollisionStrategy
from connecthub.plugins.manager import PluginError, available_plugins, load_job_class

# Posted by a form that shows the plugin's typed fields (so its JSON areas are not expected).
TYPED_MARKER = "typed_config"
# Posted when the operator chose another handler: show its fields, validate and save nothing.
LOAD_FIELDS = "load_fields"


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


class HandlerInput(DatalistInput):
    """The handler picker; without JavaScript, a button loads the chosen plugin's fields."""

    def __call__(self, field: Any, **kwargs: Any) -> Markup:
        return super().__call__(field, **kwargs) + Markup(
            '<noscript><button type="submit" name="{}" value="1" formnovalidate '
            'class="btn btn-sm mt-2">Show this plugin\'s fields</button></noscript>'
        ).format(LOAD_FIELDS)


@dataclass(frozen=True)
class TypedConfig:
    """The typed fields a handler's models give the form (none: keep the JSON areas)."""

    params: list[ConfigField] = dataclass_field(default_factory=list)
    secrets: list[ConfigField] = dataclass_field(default_factory=list)
    keeps_stored: bool = False
    job_class: Any = None

    @classmethod
    def of(cls, handler_path: str | None, keeps_stored: bool) -> TypedConfig:
        try:
            job_class = load_job_class(handler_path or "")
        except PluginError:
            return cls()  # the handler field says why
        return cls(
            config_fields(job_class.Params, PARAMS), config_fields(job_class.Secrets, SECRETS),
            keeps_stored, job_class,
        )

    def __bool__(self) -> bool:
        return bool(self.params or self.secrets)

    @property
    def fields(self) -> list[ConfigField]:
        return self.params + self.secrets

    def unbound_fields(self, unbound: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """The form's fields with the JSON areas replaced by the typed fields."""
        replaced = {"public_cfg": self.params, "secret_cfg": self.secrets}
        result: list[tuple[str, Any]] = [(TYPED_MARKER, HiddenField(default="1"))]
        for name, field in unbound:
            typed = replaced.get(name)
            if not typed:
                result.append((name, field))
                continue
            result += [(spec.form_name, spec.unbound(self.keeps_stored)) for spec in typed]
        return result

    def section(self, field_name: str) -> list[ConfigField]:
        return self.params if field_name == "public_cfg" else self.secrets


def show_config_errors(
    form: Form, fields: list[ConfigField], problems: Mapping[str, str],
    elsewhere: Callable[[str, str], None],
) -> None:
    """Each model error in `problems` under the typed field it names (`elsewhere` if none)."""
    for path, message in problems.items():
        spec, inside = field_of(fields, path)
        if spec is None:
            elsewhere(path or "(whole object)", message)
            continue
        field = form[spec.form_name]
        if not field.errors:  # its own parse error came first and says more
            field.errors = [f"{inside}: {message}" if inside else message]


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


_text = {"class": "form-control"}
_number = {"class": "form-control", "inputmode": "numeric"}


class RequiredIfPosted:
    """A JobSpec field with a default: required when the page posts it (a blank one is refused
    here), left at its default when the post leaves it out (a script, an older page)."""

    field_flags = {"required": True}

    def __call__(self, form: Any, field: Field) -> None:
        if not field.raw_data:
            raise StopValidation()
        if isinstance(field.raw_data[0], str) and not field.raw_data[0].strip():
            field.errors[:] = []  # "This field is required." says more than "Not a valid integer"
            raise StopValidation(field.gettext("This field is required."))


@dataclass(frozen=True)
class FieldKind:
    """How the form shows one JobSpec type: its WTForms field and its HTML attributes."""

    field_class: type[Field]
    render_kw: Mapping[str, Any]
    # Said after the field's description: how to type a value of this kind.
    hint: str = ""


def _kind_of(annotation: Any) -> FieldKind | None:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return FieldKind(SelectField, {"class": "form-select"})
    origin = get_origin(annotation) or annotation
    return {
        bool: FieldKind(BooleanField, {"class": "form-check-input"}),
        int: FieldKind(IntegerField, _number),
        str: FieldKind(StringField, _text),
        dict: FieldKind(JSONObjectField, {**_text, "rows": 4, "spellcheck": "false"}),
        list: FieldKind(TagListField, _text, hint="Comma-separated."),
    }.get(origin)


@dataclass(frozen=True)
class AdminField:
    """What only the admin says about a JobSpec field: its label, another field class or
    widget, extra HTML attributes, how to type it, and the names of an enum's choices."""

    label: str | None = None
    field_class: type[Field] | None = None
    widget: Any = None
    render_kw: Mapping[str, Any] = dataclass_field(default_factory=dict)
    hint: str = ""
    choice_labels: Mapping[str, str] = dataclass_field(default_factory=dict)


ADMIN_FIELDS: dict[str, AdminField] = {
    "id": AdminField(render_kw={"placeholder": "example.hello"}),
    "description": AdminField(field_class=TextAreaField, render_kw={"rows": 2}),
    "handler_path": AdminField(
        "Handler", widget=HandlerInput(available_plugins),
        render_kw={"placeholder": "extensions.example.job:ExampleJob"},
    ),
    "cron_expr": AdminField("Cron", render_kw={"placeholder": "*/5 * * * *"}),
    "timezone": AdminField(widget=DatalistInput(timezone_names)),
    "public_cfg": AdminField("Parameters (public_cfg)"),
    "secret_cfg": AdminField(
        "Secrets (secret_cfg)", field_class=SecretJSONField,
        render_kw={"rows": 3, "autocomplete": "off", "placeholder": SecretJSONField.example},
        hint="If the form comes back with an error, type it again. When editing: blank keeps "
        "the stored secrets, {} removes them.",
    ),
    "timeout_seconds": AdminField("Timeout (seconds)"),
    "max_retries": AdminField("Retries"),
    "retry_delay_seconds": AdminField("Retry delay (seconds)"),
    "concurrency_limit": AdminField("Concurrent runs"),
    "collision_strategy": AdminField(
        "When a run is still going",
        choice_labels={
            CollisionStrategy.ENQUEUE.value: "Queue the new run",
            CollisionStrategy.CANCEL_NEW.value: "Cancel the new run",
        },
    ),
    "alerts": AdminField("Alert channels"),
    "alert_after_failures": AdminField("Alert after failures in a row"),
    "alert_every_failure": AdminField("Alert on every failure"),
}


def _shape(info: FieldInfo) -> tuple[Any, bool]:
    """The field's type without None, and whether None is allowed."""
    annotation = unwrap_optional(info.annotation)
    return annotation, annotation is not info.annotation


def _default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory  # WTForms calls it: each form gets its own {} or []
    if info.default is PydanticUndefined:
        return None
    return info.default.value if isinstance(info.default, enum.Enum) else info.default


def _validators(info: FieldInfo, nullable: bool, kind: FieldKind) -> list[Any]:
    if info.is_required():
        return [InputRequired()]
    if nullable:
        return [Optional()]
    if kind.field_class in (IntegerField, StringField):
        return [RequiredIfPosted()]
    return []  # a checkbox, a list, an object or a choice always has a value


def spec_form_fields(
    spec: type[BaseModel] = JobSpec, admin: Mapping[str, AdminField] = ADMIN_FIELDS
) -> dict[str, Any]:
    """One unbound WTForms field per field of `spec`, in its order: the field class from the
    type, JobSpec's default and description, required when JobSpec requires a value, and what
    `admin` adds. A type the form cannot show is a TypeError naming the field."""
    fields: dict[str, Any] = {}
    for name, info in spec.model_fields.items():
        annotation, nullable = _shape(info)
        kind = _kind_of(annotation)
        extra = admin.get(name, AdminField())
        if kind is None and extra.field_class is None:
            raise TypeError(
                f"{spec.__name__}.{name}: the admin form has no field for {annotation!r}; "
                "give it a field_class in ADMIN_FIELDS"
            )
        kind = kind or FieldKind(extra.field_class, _text)  # type: ignore[arg-type]
        options: dict[str, Any] = {
            "label": extra.label or name.replace("_", " ").capitalize(),
            "validators": _validators(info, nullable, kind),
            "default": _default(info),
            "description": " ".join(
                text for text in (info.description, kind.hint, extra.hint) if text
            ),
            "render_kw": {**kind.render_kw, **extra.render_kw},
        }
        if extra.widget is not None:
            options["widget"] = extra.widget
        if issubclass(kind.field_class, SelectField):
            options["choices"] = [
                (member.value, extra.choice_labels.get(member.value, member.value))
                for member in annotation
            ]
        fields[name] = (extra.field_class or kind.field_class)(**options)
    return fields


def spec_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """The JobSpec input for the form's `data`: a blank optional text is None, and an object or
    a list the page did not send is JobSpec's default."""
    values = {name: data.get(name) for name in JOB_FIELDS}
    for name, info in JobSpec.model_fields.items():
        annotation, nullable = _shape(info)
        if nullable and annotation is str:
            values[name] = (values[name] or "").strip() or None
        elif values[name] is None and info.default_factory is not None:
            values[name] = info.default_factory()
    return values


def build_spec(data: Mapping[str, Any]) -> JobSpec:
    """The validated JobSpec of a submitted form (raises as JobSpec does)."""
    return JobSpec.model_validate(spec_input(data))


# JobSpec's fields as a form; JobForm adds the typed plugin fields and the whole-job check.
JobSpecForm: type[Form] = type("JobSpecForm", (Form,), spec_form_fields())


class JobForm(JobSpecForm):  # type: ignore[misc,valid-type]
    """The Job form as created; `validate` checks the whole job with JobSpec."""

    # The edit form: a blank secret field keeps the stored value.
    keeps_stored_secrets = False

    def __init__(
        self, formdata: Any = None, obj: Any = None, prefix: str = "",
        data: Mapping[str, Any] | None = None, meta: Any = None, **kwargs: Any,
    ) -> None:
        self.loading_fields = bool(formdata and formdata.get(LOAD_FIELDS))
        wants_typed = formdata is None or self.loading_fields or bool(formdata.get(TYPED_MARKER))
        handler = formdata.get("handler_path") if formdata else (data or {}).get("handler_path")
        self.typed = (
            TypedConfig.of(handler, self.keeps_stored_secrets) if wants_typed else TypedConfig()
        )
        self._merged_secrets: dict[str, Any] | None = None
        if self.typed:
            self._unbound_fields = self.typed.unbound_fields(type(self)._unbound_fields)
            data = {**(data or {}), **initial(self.typed.params, (data or {}).get("public_cfg"))}
        super().__init__(formdata, obj, prefix, data, meta, **kwargs)
        if self.loading_fields:  # fields the page did not have yet start from their defaults
            for spec in self.typed.fields:
                if spec.form_name not in formdata:
                    self[spec.form_name].process(None)

    @property
    def data(self) -> dict[str, Any]:
        data = super().data
        if not self.typed:
            return data
        for name in (TYPED_MARKER, *(spec.form_name for spec in self.typed.fields)):
            data.pop(name, None)
        if self.typed.params:
            data["public_cfg"] = collect(self.typed.params, self)
        if self.typed.secrets:
            data["secret_cfg"] = self._typed_secrets(collect(self.typed.secrets, self))
        return data

    def _typed_secrets(self, typed: dict[str, Any]) -> dict[str, Any] | None:
        return typed

    def validate(self, extra_validators: Mapping[str, Any] | None = None) -> bool:
        if self.loading_fields:
            return False  # the page only asked for the chosen plugin's fields
        valid = super().validate(extra_validators)
        try:
            build_spec(self.data)
        except (ValidationError, JobSpecFieldError) as error:
            problems = config_problems(error)
            for name, message in field_errors(error).items():
                if not self._show_config_errors(name, problems.get(name, {})):
                    self._show_error(name, message)
            if "secret_cfg" not in problems:
                self._check_typed_secrets()  # JobSpec stops at the params' errors
            return False
        return valid

    def _check_typed_secrets(self) -> None:
        secrets = self.data.get("secret_cfg")
        if not self.typed.secrets or secrets is None:
            return
        try:
            self.typed.job_class.validate_secrets(secrets)
        except JobConfigError as error:
            self._show_config_errors("secret_cfg", error.problems)

    def _show_config_errors(self, name: str, problems: Mapping[str, str]) -> bool:
        """Show the plugin model's errors of config `name` under its typed fields, if shown."""
        fields = self.typed.section(name) if self.typed else []
        if not (fields and problems):
            return False
        show_config_errors(
            self, fields, problems,
            lambda path, message: self._show_error(name, f"{path}: {message}"),
        )
        return True

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

    keeps_stored_secrets = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "secret_cfg" in self._fields:
            self.secret_cfg.render_kw = {
                **self.secret_cfg.render_kw, "placeholder": "Blank keeps the stored secrets"
            }

    def _typed_secrets(self, typed: dict[str, Any]) -> dict[str, Any] | None:
        """The stored secrets with the typed ones over them; None (keep all) if none typed."""
        if not typed:
            return None
        if self._merged_secrets is None:
            self._merged_secrets = {**queries.stored_secrets(self.id.data), **typed}
        return self._merged_secrets


class RunParamsForm(Form):
    """The params of one run ("Run with params"): the plugin's typed Params fields, prefilled
    with the job's params, or its params as a JSON object when the plugin declares no model.
    `validate` checks them with the plugin's model, as the run would."""

    params = JSONObjectField(
        "Params",
        render_kw={**_text, "rows": 6, "spellcheck": "false"},
        description="JSON object the job gets as params for this run only.",
    )

    def __init__(
        self, handler_path: str, formdata: Any = None, params: Mapping[str, Any] | None = None
    ) -> None:
        try:
            self.job_class: Any = load_job_class(handler_path)
        except PluginError:
            self.job_class = None  # installed only where the workers run: the flow validates
        self.typed = TypedConfig.of(handler_path, keeps_stored=False)
        data: dict[str, Any] = {"params": dict(params or {})}
        if self.typed.params:
            self._unbound_fields = [(spec.form_name, spec.unbound()) for spec in self.typed.params]
            data = initial(self.typed.params, params)
        super().__init__(formdata, data=data)

    @property
    def run_params(self) -> dict[str, Any]:
        if self.typed.params:
            return collect(self.typed.params, self)
        return self.params.data or {}

    def validate(self, extra_validators: Mapping[str, Any] | None = None) -> bool:
        valid = super().validate(extra_validators)
        if self.job_class is None:
            return valid
        try:
            self.job_class.validate_params(self.run_params)
        except JobConfigError as error:
            if not self.typed.params:
                self.params.errors = [*self.params.errors, str(error)]
                return False
            first = self[self.typed.params[0].form_name]
            show_config_errors(
                self, self.typed.params, error.problems,
                lambda path, message: first.errors.append(f"{path}: {message}"),
            )
            return False
        return valid
