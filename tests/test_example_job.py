"""ExampleJob: a local greeting without network, a remote one through ExampleClient against a
real local HTTP server, and Params validation that names the field."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from connecthub.jobs.base import JobConfigError, JobContext
from extensions.example.job import ExampleJob
from tests.support.logs import captured_loggers

TOKEN = "example-token-4711"


class GreetingServer:
    """`GET /greet?name=X` -> `{"message": "Greetings, X", "from": "remote"}`; records the
    Authorization header of every request."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.authorizations.append(self.headers.get("Authorization"))
                server.paths.append(self.path)
                url = urlsplit(self.path)
                name = parse_qs(url.query).get("name", ["?"])[0]
                if url.path != "/greet":
                    self.send_error(404)
                    return
                payload = json.dumps({"message": f"Greetings, {name}", "from": "remote"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def greeting_server() -> Iterator[GreetingServer]:
    server = GreetingServer()
    yield server
    server.stop()


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
    result = run_job({"name": "Venus", "base_url": greeting_server.url}, {"token": TOKEN})

    assert greeting_server.authorizations == [f"Bearer {TOKEN}"]
    assert greeting_server.paths == ["/greet?name=Venus"]
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
    result = run_job({"base_url": greeting_server.url})

    assert greeting_server.authorizations == [None]
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
