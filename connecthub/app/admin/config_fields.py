"""Form fields from a plugin's declared `Params` and `Secrets` models, and back.

`config_fields(model, section)` describes one form field per field of a pydantic model: its
type (text, integer, number, checkbox, a select for a `Literal` or an `Enum`, and JSON for
lists, objects and nested models), whether it is required, its default and its description.
`ConfigField.unbound()` makes the WTForms field (named `<section>-<name>`, e.g.
`params-base_url`); secrets are password inputs that never render a value. `collect()` turns
what was typed back into the config object the plugin's model validates (a blank field is left
out, so the model's default or its "field required" applies), and `initial()` the other way, for
an edit form. The model stays the one validation: these fields only parse what the browser
sends, and the model's errors are shown under the field they name (`field_of`).
"""

from __future__ import annotations

import enum
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from wtforms import Field
from wtforms.fields import (
    BooleanField,
    FloatField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import Optional

PARAMS = "params"
SECRETS = "secrets"

_text = {"class": "form-control"}


class MarkedRequired:
    """Marks a field required (the label's asterisk, the browser's check) and leaves the
    check itself to the model, whose "Field required" then shows under the field."""

    field_flags = {"required": True}

    def __call__(self, form: Any, field: Field) -> None:
        return None


class JSONValueField(TextAreaField):
    """Any JSON value typed as text (a nested object, a list); blank means "not given"."""

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else json.dumps(self.data, indent=2, ensure_ascii=False)

    def process_formdata(self, valuelist: list[Any]) -> None:
        if not valuelist:
            return
        text = str(valuelist[0]).strip()
        if not text:
            self.data = None
            return
        try:
            self.data = json.loads(text)
        except json.JSONDecodeError as error:
            self.data = None
            raise ValueError(
                f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
            ) from None
        except RecursionError:
            raise ValueError("not valid JSON (nested too deeply)") from None


def unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        others = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(others) == 1:
            return others[0]
    return annotation


def _choices(annotation: Any) -> list[Any] | None:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [member.value for member in annotation]
    return None


def _kind(annotation: Any) -> str:
    if _choices(annotation) is not None:
        return "choice"
    if annotation is bool:
        return "checkbox"
    if annotation is int:
        return "integer"
    if annotation is float:
        return "number"
    if annotation is str:
        return "text"
    return "json"


TYPE_LABELS = {
    "choice": "one of the choices", "checkbox": "yes/no", "integer": "integer",
    "number": "number", "text": "text", "json": "JSON",
}


@dataclass(frozen=True)
class ConfigField:
    """One field of a plugin's model as the form shows it."""

    section: str
    name: str
    kind: str
    required: bool
    default: Any
    choices: list[Any] | None
    help: str

    @property
    def form_name(self) -> str:
        return f"{self.section}-{self.name}"

    @property
    def secret(self) -> bool:
        return self.section == SECRETS

    @property
    def label(self) -> str:
        return f"{'Secret' if self.secret else 'Parameter'}: {self.name}"

    def description(self, keeps_stored: bool = False) -> str:
        parts = [self.help] if self.help else []
        facts = [TYPE_LABELS[self.kind], "required" if self.required else "optional"]
        if not self.secret and not self.required and self.default is not None:
            facts.append(f"default {json.dumps(self.default, default=str)}")
        parts.append(f"({', '.join(facts)})")
        if self.secret:
            parts.append(
                "Never shown again; blank keeps the stored value." if keeps_stored
                else "Encrypted on save, never shown again."
            )
        return " ".join(parts)

    def unbound(self, keeps_stored: bool = False) -> Any:
        """The WTForms field (unbound) for this model field."""
        marked = self.required and not (self.secret and keeps_stored)
        options: dict[str, Any] = {
            "label": self.label,
            "description": self.description(keeps_stored),
            "validators": [MarkedRequired(), Optional()] if marked else [Optional()],
        }
        render = dict(_text)
        if self.secret:
            render["autocomplete"] = "new-password"
            return PasswordField(render_kw=render, **options)
        if self.kind != "checkbox" and self.default is not None:
            options["default"] = self.default
        if self.kind == "choice":
            choices = [(str(value), str(value)) for value in self.choices or []]
            if not self.required:
                choices.insert(0, ("", "(default)" if self.default is not None else "(none)"))
            return SelectField(
                choices=choices, render_kw={"class": "form-select"},
                coerce=str, validate_choice=False, **options,
            )
        if self.kind == "checkbox":
            return BooleanField(
                default=bool(self.default), render_kw={"class": "form-check-input"}, **options
            )
        if self.kind == "integer":
            return IntegerField(render_kw={**render, "inputmode": "numeric"}, **options)
        if self.kind == "number":
            return FloatField(render_kw={**render, "inputmode": "decimal"}, **options)
        if self.kind == "json":
            return JSONValueField(render_kw={**render, "rows": 3, "spellcheck": "false"}, **options)
        return StringField(render_kw=render, **options)

    def value(self, field: Field) -> Any:
        """What the operator gave, as the model should see it; None when left blank."""
        data = field.data
        if self.kind == "checkbox":
            return bool(data)
        if data is None or (isinstance(data, str) and not data.strip()):
            return None
        if self.kind == "choice":
            by_text = {str(choice): choice for choice in self.choices or []}
            return by_text.get(data, data)
        return data


def config_fields(model: type[BaseModel] | None, section: str) -> list[ConfigField]:
    """The form fields of `model` (a plugin's Params or Secrets), in declaration order."""
    if model is None:
        return []
    fields = []
    for name, info in model.model_fields.items():
        annotation = unwrap_optional(info.annotation)
        fields.append(ConfigField(
            section=section, name=name, kind=_kind(annotation), required=info.is_required(),
            default=_default(info), choices=_choices(annotation), help=info.description or "",
        ))
    return fields


def _default(info: FieldInfo) -> Any:
    if info.is_required() or info.default is PydanticUndefined:
        return None
    value = info.default
    return value.value if isinstance(value, enum.Enum) else value


def collect(fields: list[ConfigField], form: Mapping[str, Field]) -> dict[str, Any]:
    """The config object typed into `form`'s fields (blank ones left out)."""
    config: dict[str, Any] = {}
    for spec in fields:
        value = spec.value(form[spec.form_name])
        if value is not None:
            config[spec.name] = value
    return config


def initial(fields: list[ConfigField], config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Form data for `fields` from a stored config (never used for secrets)."""
    values = config or {}
    return {
        spec.form_name: values[spec.name]
        for spec in fields
        if not spec.secret and spec.name in values
    }


def field_of(fields: list[ConfigField], path: str) -> tuple[ConfigField | None, str]:
    """The form field a model error at `path` (e.g. "target.port") belongs to, and the part
    of the path inside that field."""
    head, _, rest = path.partition(".")
    for spec in fields:
        if spec.name == head:
            return spec, rest
    return None, path
