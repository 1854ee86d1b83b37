"""The admin's Job form derives from `JobSpec`: a field added to JobSpec appears in the form with
its type, default, description and required flag, and no edit to the form."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field
from wtforms import Form
from wtforms.fields import BooleanField, IntegerField, StringField

from connecthub.app.admin.forms import JobEditForm, JobForm, spec_form_fields
from connecthub.jobs.spec import JOB_FIELDS, JobSpec
from tests.support.admin import job_form


class Posted(dict[str, list[str]]):
    """Form data as WTForms reads a request's (`getlist`)."""

    def getlist(self, key: str) -> list[str]:
        return self[key]


def test_the_form_has_exactly_the_fields_of_jobspec() -> None:
    # As a script posts it: the JSON areas, not a plugin's typed fields.
    form = JobForm(Posted({name: [value] for name, value in job_form().items()}))
    assert [field.name for field in form] == list(JOB_FIELDS)
    assert form.validate(), form.errors
    # The edit form has them too; the id rides hidden.
    assert sorted(field.name for field in JobEditForm()) == sorted(JOB_FIELDS)


def test_the_form_defaults_are_jobspecs() -> None:
    form = JobForm()
    for name, info in JobSpec.model_fields.items():
        if info.is_required():
            continue
        expected = info.get_default(call_default_factory=True)
        assert form[name].data == getattr(expected, "value", expected), name


class GrownSpec(JobSpec):
    """JobSpec with fields a later issue might add, none of them known to the form."""

    keep_days: int | None = Field(
        default=None, ge=1, description="Days of history this job keeps."
    )
    owner: str = Field(description="Who answers for this job.")
    notify_on_success: bool = True
    batch_size: int = 500


def grown_form(data: dict[str, list[str]] | None = None) -> Form:
    form_class = type("GrownForm", (Form,), spec_form_fields(GrownSpec))
    return form_class(Posted(data) if data is not None else None)


def test_a_field_added_to_jobspec_appears_in_the_form() -> None:
    form = grown_form()
    assert [field.name for field in form] == list(GrownSpec.model_fields)

    rows = form["keep_days"]
    assert isinstance(rows, IntegerField)
    assert rows.label.text == "Keep days"
    assert rows.description == "Days of history this job keeps."
    assert rows.data is None and not rows.flags.required

    owner = form["owner"]
    assert isinstance(owner, StringField) and owner.flags.required
    assert owner.description == "Who answers for this job."

    notify = form["notify_on_success"]
    assert isinstance(notify, BooleanField) and notify.data is True
    assert form["batch_size"].data == 500


@pytest.mark.parametrize(
    ("posted", "errors"),
    [
        ({"keep_days": [""], "batch_size": ["20"]}, {"owner": ["This field is required."]}),
        ({"owner": ["ops"], "batch_size": [""]}, {"batch_size": ["This field is required."]}),
        (
            {"owner": ["ops"], "keep_days": ["many"]},
            {"keep_days": ["Not a valid integer value."]},
        ),
    ],
    ids=["required left out", "blank where a default exists", "not a number"],
)
def test_the_added_fields_are_checked_as_jobspec_types_them(
    posted: dict[str, list[str]], errors: dict[str, Any]
) -> None:
    form = grown_form(posted)
    form.validate()
    added = set(GrownSpec.model_fields) - set(JobSpec.model_fields)
    assert {name: found for name, found in form.errors.items() if name in added} == errors


def test_a_field_left_out_of_a_post_keeps_its_default() -> None:
    form = grown_form({"owner": ["ops"]})
    form.validate()
    assert "batch_size" not in form.errors
    assert form["batch_size"].data == 500
    assert form["keep_days"].data is None


def test_a_type_the_form_cannot_show_is_refused_by_name() -> None:
    class OddSpec(JobSpec):
        window: tuple[int, int] = (0, 24)

    with pytest.raises(TypeError, match=r"OddSpec\.window"):
        spec_form_fields(OddSpec)
