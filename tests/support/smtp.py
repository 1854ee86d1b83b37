"""`SmtpServer`: a real local SMTP server (aiosmtpd) that accepts one login and records every
message it receives."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.processes import free_port


@dataclass
class SmtpServer:
    username: str = "alerts"
    password: str = "smtp-pass-5c1d"

    def __post_init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, authenticator=self._authenticate,
            auth_require_tls=False,
        )

    def url(self, to: str = "ops@example.com") -> str:
        """The apprise URL of this server: plain SMTP (mode=insecure), with the login."""
        return (
            f"mailto://{self.username}:{self.password}@127.0.0.1:{self.port}"
            f"?from=connecthub@example.com&to={to}&mode=insecure"
        )

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(), auth_data.password.decode()
        ) == (self.username, self.password)
        return AuthResult(success=ok)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"

    def texts(self) -> list[str]:
        """Subject and plain-text body of each message received."""
        return [
            f"{message['subject']}\n{message.get_body(('plain',)).get_content()}"
            for message in self.messages
        ]

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
