"""`ExampleClient`: the remote greeting service, `GET <base_url>/greet?name=...`."""

from __future__ import annotations

from typing import Any

from connecthub.integrations import BaseClient, ResponseDecodeError, auth_header, redact_url


class ExampleClient(BaseClient):
    """Talks to the greeting service, authenticated by a bearer token when one is given."""

    def __init__(self, base_url: str, token: str | None = None, **options: Any) -> None:
        super().__init__(base_url, headers=auth_header(token) if token else None, **options)

    def greet(self, name: str) -> dict[str, Any]:
        """The service's greeting for `name`, as the JSON object it returns."""
        body = self.get_json("/greet", params={"name": name})
        if not isinstance(body, dict):
            url = redact_url(f"{self.base_url}greet")
            raise ResponseDecodeError(
                f"GET {url} returned a JSON {type(body).__name__}, not an object: "
                "check the base URL",
                method="GET",
                url=url,
            )
        return body
