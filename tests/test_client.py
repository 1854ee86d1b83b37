"""BaseClient against a real local HTTP server: retries, Retry-After, timeouts, typed errors,
the per-attempt log line, and that credentials never reach a log record or an error."""

from __future__ import annotations

import json
import logging
import pickle
import re
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from connecthub.core.logging import secrets_masked
from connecthub.integrations import (
    BaseClient,
    ClientError,
    ConnectError,
    HTTPStatusError,
    ReadTimeout,
    ResponseDecodeError,
    RetriesExhausted,
    RetryPolicy,
    Timeout,
    TransportError,
    auth_header,
    redact_url,
)
from tests.support.http import Reply, ScriptedServer
from tests.support.logs import captured_loggers
from tests.support.processes import free_port

CANARY = "canary-XYZ"
LOG_LINE = re.compile(
    r"^(?P<method>[A-Z]+) (?P<url>\S+) -> (?P<outcome>.+?) in (?P<ms>\d+)ms "
    r"\(attempt (?P<attempt>\d+)/(?P<of>\d+)\)(?P<tail>.*)$"
)


class ServiceClient(BaseClient):
    """A client as a plugin would write one."""

    def __init__(self, base_url: str, token: str | None = None, **options: Any) -> None:
        super().__init__(base_url, headers=auth_header(token) if token else None, **options)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(server: ScriptedServer, sleeps: list[float]) -> Iterator[Any]:
    clients: list[BaseClient] = []

    def make(**options: Any) -> ServiceClient:
        options.setdefault("sleep", sleeps.append)
        options.setdefault("timeout", Timeout(connect=1, read=2, write=2, pool=1))
        client = ServiceClient(options.pop("base_url", server.url), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of the clients and of httpx, even if logging was configured not to
    propagate `connecthub.*` to the root logger."""
    with captured_loggers(caplog, "connecthub.client", "httpx"):
        yield caplog


def attempt_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = [
        LOG_LINE.match(r.getMessage())
        for r in caplog.records
        if r.name == "connecthub.client.ServiceClient"
    ]
    assert all(lines), [r.getMessage() for r in caplog.records]
    return lines  # type: ignore[return-value]


# --- retries and backoff ---------------------------------------------------------------------


def test_retries_503_then_succeeds_with_jittered_backoff(server, make_client, sleeps) -> None:
    server.script(Reply(503), Reply(503), Reply(200, {"ok": True}))
    client = make_client(retry=RetryPolicy(max_attempts=3, backoff_base=0.5, max_delay=10))

    response = client.get("/items")

    assert response.json() == {"ok": True}
    assert [r.path for r in server.received] == ["/items"] * 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter: [0, base * 2**(n-1)]


def test_backoff_is_full_jitter_capped_by_max_delay() -> None:
    policy = RetryPolicy(backoff_base=1, max_delay=3)
    samples = [policy.delay(attempt=5) for _ in range(200)]  # 1 * 2**4 = 16, capped to 3
    assert all(0 <= s <= 3 for s in samples)
    assert max(samples) > 1.5 and min(samples) < 1.5  # spread over the range, not fixed


def test_gives_up_after_max_attempts(server, make_client, sleeps) -> None:
    server.script(*[Reply(503, {"error": "down"})] * 5)
    client = make_client()

    with pytest.raises(RetriesExhausted) as caught:
        client.get("/items")

    error = caught.value
    assert len(server.received) == 3  # RetryPolicy().max_attempts
    assert len(sleeps) == 2
    assert error.attempts == 3
    assert error.status_code == 503
    assert isinstance(error.last_error, HTTPStatusError)
    assert error.__cause__ is error.last_error
    assert isinstance(error, ClientError)
    assert "3 attempts" in str(error) and "503" in str(error)


def test_retry_after_seconds_is_honoured(server, make_client, sleeps) -> None:
    server.script(Reply(429, headers={"Retry-After": "2"}), Reply(200))
    client = make_client()

    assert client.get("/items").status_code == 200
    assert sleeps == [2.0]
    assert len(server.received) == 2


def test_retry_after_is_capped_by_max_delay(server, make_client, sleeps) -> None:
    server.script(Reply(503, headers={"Retry-After": "3600"}), Reply(200))
    client = make_client(retry=RetryPolicy(max_delay=5))

    client.get("/items")

    assert sleeps == [5.0]


def test_retry_after_http_date_is_honoured(server, make_client, sleeps) -> None:
    when = datetime.now(UTC) + timedelta(seconds=4)
    server.script(Reply(429, headers={"Retry-After": format_datetime(when, usegmt=True)}), Reply())
    client = make_client()

    client.get("/items")

    assert len(sleeps) == 1
    assert 2 < sleeps[0] <= 4  # the date has a resolution of one second


def test_post_is_not_retried_on_read_timeout(server, make_client, sleeps) -> None:
    server.script(Reply(200, delay=1.0), Reply(200))
    client = make_client(timeout=Timeout(connect=1, read=0.2, write=1, pool=1))

    with pytest.raises(ReadTimeout) as caught:
        client.post("/orders", json={"n": 1})

    assert len(server.received) == 1  # the remote may have created the order: never resend
    assert sleeps == []
    assert isinstance(caught.value, TransportError)
    assert caught.value.method == "POST"


def test_get_is_retried_on_read_timeout(server, make_client, sleeps) -> None:
    server.script(Reply(200, delay=1.0), Reply(200, {"late": False}))
    client = make_client(timeout=Timeout(connect=1, read=0.2, write=1, pool=1))

    assert client.get("/items").json() == {"late": False}
    assert len(server.received) == 2
    assert len(sleeps) == 1


def test_post_is_not_retried_on_5xx(server, make_client, sleeps) -> None:
    server.script(Reply(503), Reply(200))
    client = make_client()

    with pytest.raises(HTTPStatusError) as caught:
        client.post("/orders", json={"n": 1})

    assert caught.value.status_code == 503
    assert len(server.received) == 1
    assert sleeps == []


def test_post_is_retried_when_the_policy_allows_it(server, make_client, sleeps) -> None:
    server.script(Reply(503), Reply(201, {"id": 7}))
    client = make_client(retry=RetryPolicy(methods={"get", "post"}))

    assert client.post("/orders", json={"n": 1}).json() == {"id": 7}
    assert [json.loads(r.body) for r in server.received] == [{"n": 1}, {"n": 1}]


def test_connection_refused_is_retried_even_for_post(make_client, sleeps) -> None:
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(RetriesExhausted) as caught:
        client.post("/orders", json={"n": 1})  # nothing was sent, so resending is safe

    assert caught.value.attempts == 3
    assert isinstance(caught.value.last_error, ConnectError)
    assert isinstance(caught.value.last_error, TransportError)
    assert caught.value.status_code is None
    assert len(sleeps) == 2


# --- typed errors ----------------------------------------------------------------------------


def test_404_is_not_retried_and_says_what_to_check(server, make_client, sleeps) -> None:
    server.script(Reply(404, {"error": "no such item"}))
    client = make_client()

    with pytest.raises(HTTPStatusError) as caught:
        client.get("/items/9", params={"page": 2})

    error = caught.value
    assert (error.status_code, error.method) == (404, "GET")
    assert error.url == f"{server.url}/items/9?page=2"
    assert error.detail == '{"error": "no such item"}'
    assert "check the base URL and the path" in str(error)
    assert len(server.received) == 1 and sleeps == []


def test_401_points_at_the_secrets(server, make_client) -> None:
    server.script(Reply(401, {"error": "bad token"}))
    with pytest.raises(HTTPStatusError, match="check the job's secrets"):
        make_client(token="t0ken").get("/items")


def test_get_json_rejects_a_body_that_is_not_json(server, make_client) -> None:
    server.script(Reply(200, "<html>login page</html>"))
    with pytest.raises(ResponseDecodeError, match=r"not JSON \(text/plain\)"):
        make_client().get_json("/items")


def test_errors_survive_pickling(server, make_client) -> None:
    server.script(*[Reply(503)] * 3)
    with pytest.raises(RetriesExhausted) as caught:
        make_client().get("/items")

    copy = pickle.loads(pickle.dumps(caught.value))

    assert str(copy) == str(caught.value)
    assert copy.attempts == 3 and copy.url == caught.value.url
    assert copy.status_code == 503


def test_absolute_url_to_another_host_is_refused(server, make_client) -> None:
    client = make_client(token="t0ken")
    with pytest.raises(ValueError, match="not on this client's base URL"):
        client.get("http://example.invalid/steal")
    assert server.received == []


def test_closed_client_refuses_requests(server) -> None:
    with ServiceClient(server.url) as client:
        client.get("/items")
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.get("/items")


def test_transport_can_be_injected() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={"mocked": True})

    with ServiceClient(
        "https://api.test/v1", token="t0ken", transport=httpx.MockTransport(handler)
    ) as client:
        assert client.get_json("/things") == {"mocked": True}
    assert seen == ["Bearer t0ken"]


# --- the log line ----------------------------------------------------------------------------


def test_one_log_line_per_attempt(server, make_client, client_log) -> None:
    server.script(Reply(503), Reply(200))
    client = make_client(retry=RetryPolicy(backoff_base=0.1))

    client.get("/items", params={"page": 2})

    first, second = attempt_lines(client_log)
    url = f"{server.url}/items?page=2"
    assert first.group("method", "url", "outcome", "attempt", "of") == (
        "GET",
        url,
        "503 Service Unavailable",
        "1",
        "3",
    )
    assert re.fullmatch(r"; retrying in \d+\.\d\ds", first.group("tail"))
    assert second.group("outcome", "attempt", "tail") == ("200 OK", "2", "")
    levels = [r.levelno for r in client_log.records if r.name.startswith("connecthub.client")]
    assert levels == [logging.WARNING, logging.INFO]


def test_log_line_of_a_transport_failure(make_client, client_log) -> None:
    client = make_client(
        base_url=f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(max_attempts=2)
    )

    with pytest.raises(RetriesExhausted):
        client.get("/items")

    lines = attempt_lines(client_log)
    assert [m.group("outcome") for m in lines] == ["ConnectError", "ConnectError"]
    assert lines[-1].group("tail") == "; giving up"


# --- redaction -------------------------------------------------------------------------------


def everything_printed(caplog: pytest.LogCaptureFixture, error: BaseException) -> str:
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    parts = [formatter.format(r) for r in caplog.records]
    parts += [r.getMessage() for r in caplog.records]
    parts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    last = getattr(error, "last_error", None)
    if last is not None:
        parts += [str(last), repr(last), str(vars(last))]
    parts.append(str(vars(error)))
    return "\n".join(parts)


def test_canary_secret_never_logged_nor_raised(server, make_client, client_log) -> None:
    server.script(*[Reply(503, {"echo": f"Bearer {CANARY}"})] * 3)
    with secrets_masked({"token": CANARY}):
        client = make_client(token=CANARY)
        with pytest.raises(RetriesExhausted) as caught:
            client.get(f"/items?api_key={CANARY}&page=1")

    # The canary really went out, so its absence below is the redaction's doing.
    assert server.received[0].headers["Authorization"] == f"Bearer {CANARY}"
    assert CANARY in server.received[0].path
    printed = everything_printed(client_log, caught.value)
    assert client_log.records, "the client logged nothing"
    assert CANARY not in printed
    assert "api_key=***&page=1" in printed


def test_unregistered_credentials_are_redacted_too(server, make_client, client_log) -> None:
    # A token obtained at run time is not among the job's registered secrets; the client must
    # still keep it, and secret-looking query values, out of logs and errors.
    token, query_secret = "runtime-TOKEN-123", "query-SECRET-456"
    server.script(Reply(401, {"error": f"token {token} rejected"}))
    client = make_client(token=token)

    with pytest.raises(HTTPStatusError) as caught:
        client.get("/items", params={"access_token": query_secret, "page": 1})

    assert server.received[0].headers["Authorization"] == f"Bearer {token}"
    printed = everything_printed(client_log, caught.value)
    assert any(r.name == "httpx" for r in client_log.records)  # httpx's own line is checked too
    assert token not in printed
    assert query_secret not in printed
    assert "access_token=***&page=1" in caught.value.url
    assert "token *** rejected" in caught.value.detail


def test_redact_url() -> None:
    url = "https://user:pw@h.test/x?api_key=1&page=2&client_secret=s&sig=abc#access_token=zz"
    assert redact_url(url) == (
        "https://user:***@h.test/x?api_key=***&page=2&client_secret=***&sig=***#access_token=***"
    )
    assert redact_url("https://h.test/x?q=books&limit=5") == "https://h.test/x?q=books&limit=5"


def test_auth_header_never_echoes_a_bad_token() -> None:
    assert auth_header("abc") == {"Authorization": "Bearer abc"}
    with pytest.raises(ValueError) as caught:
        auth_header("zq9 x\n")
    assert "zq9" not in str(caught.value)
