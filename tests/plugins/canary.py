"""A test plugin that sends its secret to a remote the way real plugins do, and fails.

`FailingRequestJob` builds a `BaseClient` with the secret as its bearer token and asks
`GET <params.base_url>/items?api_key=<secret>&page=1`; the test's local server answers with
errors (it may echo the secret back), so the run ends FAILED with the client's error.
"""

from __future__ import annotations

from typing import Any

from connecthub.integrations import BaseClient, RetryPolicy, Timeout, auth_header
from connecthub.jobs.base import BaseJob


class CanaryClient(BaseClient):
    """A client as an integration engineer writes one: the token is a default header."""

    def __init__(self, base_url: str, token: str) -> None:
        super().__init__(
            base_url,
            headers=auth_header(token),
            timeout=Timeout(connect=5, read=10, write=10, pool=5),
            retry=RetryPolicy(max_attempts=2, max_delay=1),
        )

    def items(self, api_key: str) -> Any:
        return self.get_json("/items", params={"api_key": api_key, "page": 1})


class FailingRequestJob(BaseJob):
    """Calls the remote with the secret in the Authorization header and in ?api_key=."""

    def run(self, params: dict[str, Any], secrets: dict[str, Any]) -> Any:
        token = secrets["token"]
        with CanaryClient(params["base_url"], token) as client:
            return client.items(token)
