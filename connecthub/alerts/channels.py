"""Alert channels: a name, an apprise URL and whether it is a default channel.

An apprise URL carries credentials (an SMTP password, a webhook token in its path), so it is
stored only as a Fernet token (`security.fernet`, the one place that encrypts) and shown only
as apprise prints it with `privacy=True`. `send` is the one place that hands a URL to apprise;
the error it returns has every part of the URL that could be secret masked.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

import apprise
from sqlalchemy import select
from sqlalchemy.orm import Session

from connecthub.core.logging import MASK
from connecthub.db import crud
from connecthub.db.models import AlertChannel, utcnow
from connecthub.jobs.vocabulary import CHANNEL_NAME_PATTERN
from connecthub.security.fernet import decrypt_json, encrypt_json

MAX_URL_LENGTH = 4000


class ChannelError(ValueError):
    """A channel that cannot be saved, found or used; the message says why."""


def _plugin(url: str) -> apprise.NotifyBase:
    plugin = apprise.Apprise.instantiate(url) if url and len(url) <= MAX_URL_LENGTH else None
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else "(none)"
        raise ChannelError(
            f"not an apprise URL this ConnectHub can send to (scheme {scheme}); e.g. "
            "mailto://user:password@smtp.example.com:25?to=ops@example.com or "
            "json://hooks.example.com/alert"
        )
    return plugin


def masked_url(url: str) -> str:
    """`url` as apprise prints it with its credentials hidden, path and query left out (a
    webhook's path is often its token)."""
    parts = urlsplit(_plugin(url).url(privacy=True))
    path = "/***" if parts.path.strip("/") else ""
    return f"{parts.scheme}://{parts.netloc}{path}"


def add_channel(session: Session, name: str, url: str, *, default: bool = False) -> AlertChannel:
    """Create or replace the channel `name`; flushed, not committed."""
    if not CHANNEL_NAME_PATTERN.match(name or ""):
        raise ChannelError("a channel name is 1 to 100 letters, digits, '.', '-' or '_'")
    masked = masked_url(url.strip())
    channel = session.get(AlertChannel, name) or AlertChannel(name=name, created_at=utcnow())
    # Fail closed, as for a job's secrets: a new key only while nothing is encrypted yet.
    create_key = not crud.secret_tokens(session)
    channel.url_token = encrypt_json({"url": url.strip()}, create_key=create_key)
    channel.masked_url = masked[:500]
    channel.is_default = default
    session.add(channel)
    session.flush()
    return channel


def get_channel(session: Session, name: str) -> AlertChannel:
    channel = session.get(AlertChannel, name)
    if channel is None:
        raise ChannelError(f"no alert channel named '{name}' (see `connecthub alerts list`)")
    return channel


def list_channels(session: Session) -> list[AlertChannel]:
    return list(session.scalars(select(AlertChannel).order_by(AlertChannel.name)))


def delete_channel(session: Session, name: str) -> None:
    session.delete(get_channel(session, name))
    session.flush()


def channels_for(session: Session, names: list[str] | None) -> list[str]:
    """The channels an alert goes to: those named that exist, or else the default ones (an
    alert to a channel deleted meanwhile still reaches someone)."""
    named = list(
        session.scalars(select(AlertChannel.name).where(AlertChannel.name.in_(names or [])))
    )
    return named or list(
        session.scalars(select(AlertChannel.name).where(AlertChannel.is_default))
    )


def channel_url(channel: AlertChannel) -> str:
    return decrypt_json(channel.url_token)["url"]


def _secret_parts(url: str) -> list[str]:
    """Every piece of `url` that may be a credential, longest first."""
    parts = urlsplit(url)
    pieces = {url, parts.password or "", parts.username or "", parts.path, parts.query}
    pieces.update(unquote(piece) for piece in list(pieces))
    pieces.update(segment for segment in parts.path.split("/"))
    return sorted((piece for piece in pieces if len(piece) >= 3), key=len, reverse=True)


def send(url: str, title: str, body: str) -> str | None:
    """Send one message through apprise; None when it was delivered, else why not (masked)."""
    notifier = apprise.Apprise()
    if not notifier.add(_plugin(url)):
        return "apprise refused the channel's URL"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        delivered = notifier.notify(title=title, body=body)
    if delivered:
        return None
    lines = [line.split(" - ", 2)[-1] for line in captured.getvalue().splitlines() if line]
    reason = lines[-1] if lines else "apprise reported a failure"
    for piece in _secret_parts(url):
        reason = reason.replace(piece, MASK)
    return reason[:500]
