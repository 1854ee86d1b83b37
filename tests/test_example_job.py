"""ExampleJob: a local greeting without network, a remote one through ExampleClient against a
real local HTTP server (`tests.support.http`), and Params validation that names the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from connecthub.jobs.base import JobConfigError, JobContext
from extensions.example.job import ExampleJob
from tests.support.http import Reply, ScriptedServer
from tests.support.logs import captured_loggers

TOKEN = "example-token-4711"


@pytest.fixture
def greeting_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


def greeting(name: str) -> Reply:
    """What a greeting service answers to `GET /greet?name=<name>`."""
    return Reply(body={"message": f"Greetings, {name}", "from": "remote"})


@pytest.fixture
def job_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with captured_loggers(caplog, "extensions", "connecthub.client", "httpx"):
        yield caplog


def run_job(params: dict[str, Any], secrets: dict[str, Any] | None = None) -> Any:
    """Validate and run the job the way the runner does."""
    job = ExampleJob(JobContext(job_id="example-test"))
    return job.run(ExampleJob.validate_params(params), ExampleJob.validate_secrets(secrets or {}))


def test_without_base_url_greets_locally(job_log) -> None:
    result = run_job({"name": "Venus"})

    assert result == {"greeting": "Hello, Venus!"}
    assert json.loads(json.dumps(result)) == result
    assert any("Venus" in r.getMessage() for r in job_log.records if r.name == "extensions")
    assert not any(r.name.startswith(("connecthub.client", "httpx")) for r in job_log.records)


def test_defaults_greet_mars_with_no_params_and_no_secrets() -> None:
    assert run_job({}) == {"greeting": "Hello, Mars!"}


def test_with_base_url_sends_the_token_and_returns_the_remote_json(
    greeting_server, job_log
) -> None:
    greeting_server.script(greeting("Venus"))
    result = run_job({"name": "Venus", "base_url": greeting_server.url}, {"token": TOKEN})

    [request] = greeting_server.received
    assert (request.method, request.path) == ("GET", "/greet?name=Venus")
    assert request.headers.get("Authorization") == f"Bearer {TOKEN}"
    assert result == {
        "greeting": "Hello, Venus!",
        "remote": {"message": "Greetings, Venus", "from": "remote"},
    }
    assert json.loads(json.dumps(result)) == result
    # No secrets were registered for masking here: the job and client must not log the token.
    messages = [r.getMessage() for r in job_log.records]
    assert any(r.name == "connecthub.client.ExampleClient" for r in job_log.records)
    assert not any(TOKEN in m for m in messages), messages


def test_without_a_token_no_authorization_is_sent(greeting_server) -> None:
    greeting_server.script(greeting("Mars"))
    result = run_job({"base_url": greeting_server.url})

    [request] = greeting_server.received
    assert request.path == "/greet?name=Mars"
    assert "Authorization" not in request.headers
    assert result["remote"]["message"] == "Greetings, Mars"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"name": ["not", "a", "string"]}, "params.name"),
        ({"base_url": "ftp://files.test"}, "params.base_url"),
        ({"nmae": "typo"}, "params.nmae"),
    ],
)
def test_params_validation_error_names_the_field(params, field) -> None:
    with pytest.raises(JobConfigError) as caught:
        ExampleJob.validate_params(params)
    assert str(caught.value).startswith(f"{field}:")
