"""The job form from the plugin's declared models, over HTTP (real PostgreSQL, Prefect down).

Choosing a handler whose plugin declares Params/Secrets brings back the form with one typed
field per model field (text, integer, select, checkbox, JSON, password); the model's errors
appear under the field they name; secrets are never rendered back, and on edit a blank secret
field keeps that stored secret while a typed one replaces it. A plugin without models keeps the
JSON areas, and a post with the JSON fields still works. "Run with params" shows the same
fields, prefilled with the job's params, and refuses bad values under the field.
"""

from __future__ import annotations

from typing import Any

from connecthub.security.fernet import decrypt_json
from tests.support.admin import (
    RecordingClient,
    field_error,
    field_group,
    job_form,
    page_csrf_token,
    stored_job,
)

TYPED = "tests.plugins.typed:TypedJob"
JOB_ID = "typed.job"
API_KEY = "typed-api-key-5e1f"


def typed_form(**overrides: str) -> dict[str, str]:
    form = job_form(id=JOB_ID, handler_path=TYPED)
    del form["public_cfg"], form["secret_cfg"]
    form.update({
        "typed_config": "1",
        "params-target": "crm",
        "params-batch_size": "50",
        "params-mode": "full",
        "params-fail_in_transform": "y",
        "params-filters": '{"country": "DE"}',
        "secrets-api_key": API_KEY,
        "secrets-password": "",
    })
    form.update(overrides)
    return {key: value for key, value in form.items() if value is not None}


def post(client: RecordingClient, path: str, form: dict[str, str]) -> Any:
    return client.post(path, data=form)


def no_errors(page: str) -> bool:
    return 'class="invalid-feedback"' not in page


def test_choosing_a_handler_shows_the_plugins_typed_fields(client: RecordingClient) -> None:
    blank = client.get("/admin/job/create").text
    assert 'name="public_cfg"' in blank and 'name="secret_cfg"' in blank
    assert 'name="load_fields"' in blank  # the <noscript> button, and the script's flag

    form = job_form(id=JOB_ID, handler_path=TYPED, load_fields="1")
    page = post(client, "/admin/job/create", form)
    assert page.status_code == 400  # nothing saved: the form comes back
    assert stored_job(JOB_ID) is None
    text = page.text
    assert no_errors(text)
    assert 'name="public_cfg"' not in text and 'name="secret_cfg"' not in text
    assert 'name="typed_config"' in text
    target = field_group(text, "params-target")
    assert "required" in target and "Name of the remote system." in target
    assert 'type="number"' in field_group(text, "params-batch_size") or 'inputmode="numeric"' in (
        field_group(text, "params-batch_size")
    )
    assert 'value="100"' in field_group(text, "params-batch_size")  # the default
    assert "default 100" in field_group(text, "params-batch_size")
    mode = field_group(text, "params-mode")
    assert "<select" in mode and '<option selected value="delta">' in mode
    assert 'type="checkbox"' in field_group(text, "params-fail_in_transform")
    assert "<textarea" in field_group(text, "params-filters")
    for secret in ("secrets-api_key", "secrets-password"):
        assert 'type="password"' in field_group(text, secret)
    # The values typed before stay.
    assert 'value="typed.job"' in field_group(text, "id")


def test_model_errors_show_under_the_field_they_name(client: RecordingClient) -> None:
    page = post(client, "/admin/job/create", typed_form(**{
        "params-target": "", "params-batch_size": "0", "secrets-api_key": "abc",
    }))
    assert page.status_code == 400
    assert stored_job(JOB_ID) is None
    assert "Field required" in field_error(page.text, "params-target")
    assert "greater than or equal to 1" in field_error(page.text, "params-batch_size")
    assert "at least 4 characters" in field_error(page.text, "secrets-api_key")
    assert 'value="abc"' not in page.text  # a secret is never sent back

    unparsable = post(client, "/admin/job/create", typed_form(**{
        "params-batch_size": "lots", "params-filters": '{"country": ',
    }))
    assert unparsable.status_code == 400
    assert "Not a valid integer" in field_error(unparsable.text, "params-batch_size")
    assert "not valid JSON" in field_error(unparsable.text, "params-filters")
    assert API_KEY not in unparsable.text


def test_typed_fields_save_typed_values_and_secrets_encrypted(client: RecordingClient) -> None:
    response = post(client, "/admin/job/create", typed_form())
    assert response.status_code == 302, response.text
    job = stored_job(JOB_ID)
    assert job is not None
    assert job.public_cfg == {
        "target": "crm", "batch_size": 50, "mode": "full", "fail_in_transform": True,
        "filters": {"country": "DE"},
    }
    assert job.secret_cfg and API_KEY not in job.secret_cfg
    assert decrypt_json(job.secret_cfg) == {"api_key": API_KEY}


def test_edit_prefills_params_and_keeps_each_blank_secret(client: RecordingClient) -> None:
    assert post(client, "/admin/job/create", typed_form()).status_code == 302
    edit = client.get(f"/admin/job/edit/{JOB_ID}").text
    assert 'value="crm"' in field_group(edit, "params-target")
    assert '<option selected value="full">' in field_group(edit, "params-mode")
    assert "checked" in field_group(edit, "params-fail_in_transform")
    assert "blank keeps the stored value" in field_group(edit, "secrets-api_key")
    assert API_KEY not in edit

    # Only the password is typed: the stored api_key stays, the password is added.
    changed = typed_form(**{"secrets-api_key": "", "secrets-password": "pw-1234"})
    del changed["id"]
    changed["id"] = JOB_ID
    response = post(client, f"/admin/job/edit/{JOB_ID}", changed)
    assert response.status_code == 302, response.text
    assert decrypt_json(stored_job(JOB_ID).secret_cfg) == {  # type: ignore[union-attr,arg-type]
        "api_key": API_KEY, "password": "pw-1234",
    }
    # Nothing typed: every stored secret stays, the token untouched.
    token = stored_job(JOB_ID).secret_cfg  # type: ignore[union-attr]
    untouched = typed_form(**{"secrets-api_key": "", "params-target": "erp"})
    response = post(client, f"/admin/job/edit/{JOB_ID}", untouched)
    assert response.status_code == 302, response.text
    job = stored_job(JOB_ID)
    assert job.secret_cfg == token and job.public_cfg["target"] == "erp"  # type: ignore[union-attr,index]


def test_a_plugin_without_models_keeps_the_json_areas(client: RecordingClient) -> None:
    form = job_form(id="echo.job", handler_path="tests.plugins.jobs:EchoJob", load_fields="1")
    page = post(client, "/admin/job/create", form).text
    assert 'name="public_cfg"' in page and 'name="secret_cfg"' in page
    assert 'name="typed_config"' not in page


def test_run_with_params_shows_the_same_fields(client: RecordingClient) -> None:
    assert post(client, "/admin/job/create", typed_form()).status_code == 302
    page = client.get(f"/admin/job/run-with-params/{JOB_ID}")
    assert page.status_code == 200
    assert 'value="crm"' in field_group(page.text, "params-target")  # the job's params
    assert 'value="50"' in field_group(page.text, "params-batch_size")
    assert "secrets-" not in page.text  # a run changes params only
    form = {
        "csrf_token": page_csrf_token(page.text), "params-target": "",
        "params-batch_size": "5000", "params-mode": "delta", "params-filters": "",
    }
    refused = client.post(f"/admin/job/run-with-params/{JOB_ID}", data=form)
    assert refused.status_code == 400
    assert "less than or equal to 1000" in field_error(refused.text, "params-batch_size")
    assert "Field required" in field_error(refused.text, "params-target")
    forged = client.post(
        f"/admin/job/run-with-params/{JOB_ID}", data={**form, "csrf_token": "guess"}
    )
    assert forged.status_code == 403
    # Prefect is down here: a valid run is refused with the reason, on the same form.
    valid = {**form, "params-target": "crm", "params-batch_size": "7"}
    response = client.post(f"/admin/job/run-with-params/{JOB_ID}", data=valid)
    assert response.status_code == 400
    assert "did not start" in response.text
    assert client.get("/admin/job/run-with-params/no.such.job").status_code == 404
