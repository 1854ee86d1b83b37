"""The login throttle, kept in the database so that every admin replica counts the same failures.

After `max_failures` (5) failed logins for one username from one client address, that pair waits
`base_delay_seconds` (30 s), doubling with each further failure up to `max_delay_seconds`
(15 min); so does the address itself after `max_failures_per_address` (20) failures over any
usernames. A successful login clears both. Failures older than `forget_after_seconds` (1 h) are
forgotten, and their rows deleted as new failures come in.

Each failure is one atomic upsert per key (INSERT ... ON CONFLICT DO UPDATE), so replicas that
count at the same moment add up instead of overwriting each other. Times are wall-clock seconds
(`time.time`), which replicas on different machines share, unlike a monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connecthub.db.engine import get_engine, session_scope
from connecthub.db.models import LoginFailure

MAX_KEY_LENGTH = 400


def _keys(key: tuple[str, str]) -> tuple[str, str]:
    address, username = key
    return f"pair:{address} {username}"[:MAX_KEY_LENGTH], f"address:{address}"[:MAX_KEY_LENGTH]


class LoginThrottle:
    """Failed logins per (client address, username) and per client address; how long to wait.

    The per-address count, with its higher limit, stops one address from guessing on through
    many usernames.
    """

    def __init__(
        self,
        max_failures: int = 5,
        max_failures_per_address: int = 20,
        base_delay_seconds: float = 30.0,
        max_delay_seconds: float = 900.0,
        forget_after_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_failures = max_failures
        self.max_failures_per_address = max_failures_per_address
        self.base_delay_seconds = base_delay_seconds
        self.max_delay_seconds = max_delay_seconds
        self.forget_after_seconds = forget_after_seconds
        self._clock = clock

    def _wait(self, row: LoginFailure | None, limit: int, now: float) -> float:
        if row is None or row.count < limit or now - row.last_failure > self.forget_after_seconds:
            return 0.0
        exponent = min(row.count - limit, 30)
        delay = min(self.base_delay_seconds * 2**exponent, self.max_delay_seconds)
        return max(0.0, row.last_failure + delay - now)

    def retry_after(self, key: tuple[str, str]) -> float:
        """Seconds `key` (client address, username) must still wait (0: it may try now)."""
        pair_key, address_key = _keys(key)
        now = self._clock()
        with session_scope() as session:
            rows = {
                row.key: row for row in session.scalars(
                    select(LoginFailure).where(LoginFailure.key.in_((pair_key, address_key)))
                )
            }
            return max(
                self._wait(rows.get(pair_key), self.max_failures, now),
                self._wait(rows.get(address_key), self.max_failures_per_address, now),
            )

    def failed(self, key: tuple[str, str]) -> None:
        now = self._clock()
        forgotten = now - self.forget_after_seconds
        dialect = postgresql if get_engine().dialect.name == "postgresql" else sqlite
        with session_scope() as session:
            for throttle_key in _keys(key):
                statement = dialect.insert(LoginFailure).values(
                    key=throttle_key, count=1, last_failure=now
                )
                stored = LoginFailure.__table__.c
                session.execute(statement.on_conflict_do_update(
                    index_elements=[stored.key],
                    set_={
                        # A count whose last failure is forgotten starts again at 1.
                        "count": case(
                            (stored.last_failure < forgotten, 1), else_=stored.count + 1
                        ),
                        "last_failure": now,
                    },
                ))
            self._forget(session, forgotten)

    @staticmethod
    def _forget(session: Session, before: float) -> None:
        session.execute(delete(LoginFailure).where(LoginFailure.last_failure < before))

    def succeeded(self, key: tuple[str, str]) -> None:
        with session_scope() as session:
            session.execute(delete(LoginFailure).where(LoginFailure.key.in_(_keys(key))))
