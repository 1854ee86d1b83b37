"""The plugin manager's distinct errors, the plugin list, and JobSpec validation (every field,
the plugin's own Params/Secrets models, and error messages that never repeat an input value)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import extensions
from connecthub.jobs.base import BaseJob
from connecthub.jobs.spec import JobSpec, JobSpecFieldError, field_errors
from connecthub.plugins.manager import (
    HandlerPathFormatError,
    NotAJobError,
    PluginError,
    PluginImportError,
    PluginNotFoundError,
    available_plugins,
    load_job_class,
)
from extensions.example.job import ExampleJob
from tests.plugins.jobs import EchoJob

EXAMPLE = "extensions.example.job:ExampleJob"
SECRET_LOOKING = "sk_live_DO_NOT_ECHO_8f3a9b2c7d"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for throwaway plugin modules."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write_module(directory: Path, name: str, source: str) -> str:
    (directory / f"{name}.py").write_text(source)
    return name


def load_error(handler_path: str) -> PluginError:
    with pytest.raises(PluginError) as caught:
        load_job_class(handler_path)
    return caught.value


# -- load_job_class ------------------------------------------------------------------------------


def test_loads_a_job_class() -> None:
    assert load_job_class(EXAMPLE) is ExampleJob
    assert load_job_class(f"  {EXAMPLE} ") is ExampleJob
    assert load_job_class("tests.plugins.jobs:EchoJob") is EchoJob


@pytest.mark.parametrize(
    "bad", ["", "   ", "no_colon", "extensions.example.job", "a:b:c", "mod:", ":Cls",
            "1mod:Job", "mod:Job()", "some/path.py:Job", "mod.:Job", "mod:Job.attr"],
)
def test_bad_handler_path_format(bad: str) -> None:
    error = load_error(bad)
    assert type(error) is HandlerPathFormatError
    assert "module:Class" in str(error)
    assert EXAMPLE in str(error)  # shows an example of the right form


def test_missing_module() -> None:
    name = unique("connecthub_no_such_module")
    error = load_error(f"{name}:Job")
    assert type(error) is PluginImportError
    assert str(error) == f"module '{name}' was not found"
    error = load_error("extensions.no_such_plugin.job:Job")
    assert type(error) is PluginImportError
    assert "'extensions.no_such_plugin.job' was not found" in str(error)


def test_module_that_raises_on_import(module_dir: Path) -> None:
    name = write_module(
        module_dir, unique("broken_plugin"),
        "from connecthub.jobs import base\n"
        "raise RuntimeError('CRM_URL must be set before importing this plugin')\n",
    )
    error = load_error(f"{name}:Job")
    assert type(error) is PluginImportError
    assert f"module '{name}' failed to import" in str(error)
    assert "RuntimeError: CRM_URL must be set before importing this plugin" in str(error)
    assert error.__cause__ is None and error.__suppress_context__


def test_module_with_a_syntax_error(module_dir: Path) -> None:
    name = write_module(module_dir, unique("syntax_plugin"), "def broken(:\n    pass\n")
    error = load_error(f"{name}:Job")
    assert type(error) is PluginImportError
    assert "failed to import: SyntaxError" in str(error)


def test_module_whose_dependency_is_missing(module_dir: Path) -> None:
    dependency = unique("vendor_sdk")
    name = write_module(module_dir, unique("crm_plugin"), f"import {dependency}\n")
    error = load_error(f"{name}:Job")
    assert type(error) is PluginImportError
    assert str(error) == (
        f"module '{name}' failed to import: it needs '{dependency}', which is missing"
    )


def test_missing_dependency_whose_name_prefixes_the_module(module_dir: Path) -> None:
    """A plugin `crm_sync` that needs the missing package `crm` is found, it just fails to
    import; reporting it as "not found" sends the operator to look for the wrong problem."""
    dependency = unique("crm")
    name = write_module(module_dir, f"{dependency}_sync", f"import {dependency}\n")
    error = load_error(f"{name}:Job")
    assert type(error) is PluginImportError
    assert str(error) == (
        f"module '{name}' failed to import: it needs '{dependency}', which is missing"
    )


def test_missing_attribute() -> None:
    error = load_error("extensions.example.job:ExampleJb")
    assert type(error) is PluginNotFoundError
    assert str(error) == "module 'extensions.example.job' has no attribute 'ExampleJb'"


@pytest.mark.parametrize(
    "path",
    ["extensions.example.client:ExampleClient",  # a class, but a client, not a job
     "pathlib:Path",  # a class that is not a BaseJob
     "os:getcwd",  # not a class at all
     "tests.plugins.jobs:time"],  # a module attribute
)
def test_not_a_base_job(path: str) -> None:
    error = load_error(path)
    assert type(error) is NotAJobError
    assert str(error) == f"'{path}' is not a subclass of connecthub.jobs.BaseJob"


def test_base_job_itself_is_refused() -> None:
    error = load_error("connecthub.jobs.base:BaseJob")
    assert type(error) is NotAJobError
    assert "abstract base" in str(error)


def test_error_types_are_distinct() -> None:
    kinds = {HandlerPathFormatError, PluginImportError, PluginNotFoundError, NotAJobError}
    assert len(kinds) == 4
    for kind in kinds:
        assert issubclass(kind, PluginError)
        assert not any(issubclass(kind, other) for other in kinds - {kind})


# -- available_plugins ---------------------------------------------------------------------------


def test_available_plugins_lists_the_example() -> None:
    plugins = available_plugins()
    assert EXAMPLE in plugins
    assert "extensions.example.client:ExampleClient" not in plugins
    assert plugins == sorted(set(plugins))
    for path in plugins:
        assert issubclass(load_job_class(path), BaseJob)


def test_a_broken_plugin_does_not_hide_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, broken = unique("good_plugin"), unique("broken_plugin")
    (tmp_path / f"{good}.py").write_text(
        "from connecthub.jobs.base import BaseJob\n"
        "from extensions.example.job import ExampleJob  # imported, not defined here\n"
        "class GoodJob(BaseJob):\n"
        "    def run(self, params, secrets):\n"
        "        return {}\n"
        "class NotAJob:\n"
        "    pass\n"
    )
    (tmp_path / f"{broken}.py").write_text("raise ImportError('half-installed plugin')\n")
    monkeypatch.setattr(extensions, "__path__", [*extensions.__path__, str(tmp_path)])
    try:
        plugins = available_plugins()
    finally:
        for name in (f"extensions.{good}", f"extensions.{broken}"):
            sys.modules.pop(name, None)
    assert f"extensions.{good}:GoodJob" in plugins
    assert EXAMPLE in plugins
    assert f"extensions.{good}:ExampleJob" not in plugins
    assert f"extensions.{good}:NotAJob" not in plugins
    assert not any(path.startswith(f"extensions.{broken}") for path in plugins)


# -- JobSpec -------------------------------------------------------------------------------------


def valid(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "example.hello", "cron_expr": "* * * * *", "handler_path": EXAMPLE,
        "public_cfg": {"name": "Mars"}, "secret_cfg": {"token": "demo-token"},
    }
    data.update(overrides)
    return data


def errors_of(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises((ValidationError, JobSpecFieldError)) as caught:
        JobSpec.model_validate(data)
    return field_errors(caught.value)


def test_valid_spec_and_defaults() -> None:
    spec = JobSpec.model_validate(valid(cron_expr="  0   5 * * 1-5  ", id=" a.b-C_9 "))
    assert spec.id == "a.b-C_9"
    assert spec.name == "a.b-C_9"
    assert spec.cron_expr == "0 5 * * 1-5"
    assert spec.timezone == "UTC"
    assert spec.enabled is True
    assert spec.concurrency_limit == 1
    assert JobSpec.model_validate(valid(cron_expr="@Daily")).cron_expr == "@daily"
    assert JobSpec.model_validate(valid(timezone="Asia/Shanghai")).timezone == "Asia/Shanghai"
    assert JobSpec.model_validate(valid(secret_cfg=None)).secret_cfg is None


@pytest.mark.parametrize(
    "bad_id", ["bad id", "bad/id", "ümlaut", "", "a" * 201, "semi;colon", "new\nline", ".", ".."],
)
def test_rejects_bad_ids(bad_id: str) -> None:
    errors = errors_of(valid(id=bad_id))
    assert list(errors) == ["id"]


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 0 31 2 *", "never fires"),
        ("*/10 * * * * *", "exactly 5 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("", "a cron expression is required"),
        ("   ", "a cron expression is required"),
        ("@fortnightly", "unknown cron alias"),
        ("* * *", "exactly 5 fields"),
    ],
)
def test_rejects_bad_cron(cron: str, expected: str) -> None:
    errors = errors_of(valid(cron_expr=cron))
    assert list(errors) == ["cron_expr"]
    assert expected in errors["cron_expr"]


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "utc+2", "../../etc/passwd", ""])
def test_rejects_bad_timezone(zone: str) -> None:
    errors = errors_of(valid(timezone=zone))
    assert list(errors) == ["timezone"]
    assert "IANA" in errors["timezone"]


@pytest.mark.parametrize("public", [["name", "Mars"], "name=Mars", 42, None])
def test_rejects_public_cfg_that_is_not_an_object(public: Any) -> None:
    errors = errors_of(valid(public_cfg=public))
    assert "public_cfg" in errors


@pytest.mark.parametrize("secret", [SECRET_LOOKING, [SECRET_LOOKING], 4242424242])
def test_rejects_secret_cfg_that_is_not_an_object(secret: Any) -> None:
    errors = errors_of(valid(secret_cfg=secret))
    assert list(errors) == ["secret_cfg"]
    assert str(SECRET_LOOKING) not in str(errors)
    assert "4242424242" not in str(errors)


def test_rejects_unknown_fields() -> None:
    errors = errors_of(valid(schedule="* * * * *", secret=SECRET_LOOKING))
    assert set(errors) == {"schedule", "secret"}
    assert "Extra inputs are not permitted" in errors["schedule"]
    assert SECRET_LOOKING not in str(errors)


def test_rejects_huge_payloads() -> None:
    errors = errors_of(valid(public_cfg={"name": "x" * (64 * 1024)}))
    assert "64 KiB" in errors["public_cfg"]
    huge_secret = SECRET_LOOKING * 1000
    errors = errors_of(valid(secret_cfg={"token": huge_secret}))
    assert "16 KiB" in errors["secret_cfg"]
    assert SECRET_LOOKING not in str(errors)
    errors = errors_of(valid(tags=[f"t{i}" for i in range(21)]))
    assert "tags" in errors
    errors = errors_of(valid(description="d" * 4001))
    assert "description" in errors


def test_rejects_bad_numbers() -> None:
    errors = errors_of(valid(max_retries=-1, timeout_seconds=0, concurrency_limit=0))
    assert set(errors) == {"max_retries", "timeout_seconds", "concurrency_limit"}


def test_rejects_bad_handler_path() -> None:
    errors = errors_of(valid(handler_path="extensions.example.job:Nope"))
    assert list(errors) == ["handler_path"]
    assert "has no attribute 'Nope'" in errors["handler_path"]


def test_params_are_checked_against_the_plugin_model() -> None:
    errors = errors_of(valid(public_cfg={"name": "Mars", "nmae": SECRET_LOOKING}))
    assert list(errors) == ["public_cfg"]
    assert "params.nmae" in errors["public_cfg"]
    assert SECRET_LOOKING not in errors["public_cfg"]
    errors = errors_of(valid(public_cfg={"base_url": f"ftp://{SECRET_LOOKING}@host"}))
    assert "params.base_url" in errors["public_cfg"]
    assert "http://" in errors["public_cfg"]
    assert SECRET_LOOKING not in errors["public_cfg"]
    # EchoJob declares no Params: anything goes.
    JobSpec.model_validate(valid(handler_path="tests.plugins.jobs:EchoJob",
                                 public_cfg={"anything": [1, 2]}))


def test_secrets_are_checked_against_the_plugin_model() -> None:
    errors = errors_of(valid(secret_cfg={"token": [SECRET_LOOKING]}))
    assert list(errors) == ["secret_cfg"]
    assert "secrets.token" in errors["secret_cfg"]
    assert SECRET_LOOKING not in errors["secret_cfg"]


def test_field_errors_never_repeat_input_values() -> None:
    """Several errors at once, each field carrying a secret-looking value."""
    errors = errors_of({
        "id": f"{SECRET_LOOKING} x",
        "name": SECRET_LOOKING * 20,
        "cron_expr": "*/10 * * * * *",
        "handler_path": EXAMPLE,
        "public_cfg": SECRET_LOOKING,
        "secret_cfg": {"token": {"nested": SECRET_LOOKING}},
        "enabled": SECRET_LOOKING,
        "max_retries": SECRET_LOOKING,
        "tags": [SECRET_LOOKING * 5],
        SECRET_LOOKING[:6]: SECRET_LOOKING,
    })
    assert {"id", "name", "cron_expr", "public_cfg", "enabled", "max_retries", "tags"} <= set(
        errors
    )
    for field, message in errors.items():
        assert SECRET_LOOKING not in message, field
        assert SECRET_LOOKING[:12] not in message, field
