"""Keeping credentials out of what a client logs and raises.

`redact_url(url)` replaces the values of secret-looking query parameters (and fragment
parameters, and a password in the userinfo) with `***`. `Redactor` is built per request: it
knows the request's own credentials (values of secret-looking headers such as Authorization,
Cookie or X-Api-Key, the credential inside `Bearer ...`/`Basic ...`, secret-looking query
values) and removes them from any text, after `connecthub.core.logging.mask` has removed the
running job's registered secrets. The second step matters for credentials the job did not
register, e.g. an access token obtained at run time.

A name looks secret if it contains token, secret, passw, pwd, auth, signature, credential,
session, cookie or jwt, ends in "key", or is sig/code/pass. That over-redacts (`author=`), which
costs a little readability; under-redacting would cost a credential.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import httpx

from connecthub.core.logging import MASK, MIN_MASKED_LENGTH, mask

__all__ = ["Redactor", "is_secret_name", "redact_url"]

_SECRET_NAME_PARTS = (
    "token",
    "secret",
    "passw",
    "pwd",
    "auth",
    "signature",
    "credential",
    "session",
    "cookie",
    "jwt",
)
_SECRET_NAMES = frozenset({"sig", "code", "pass"})
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+")


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter called `name` probably carries a credential."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key in _SECRET_NAMES or key.endswith("key") or any(p in key for p in _SECRET_NAME_PARTS)


def _redact_pairs(text: str) -> str:
    pairs = []
    for pair in text.split("&"):
        name, sep, _value = pair.partition("=")
        pairs.append(f"{name}={MASK}" if sep and is_secret_name(unquote_plus(name)) else pair)
    return "&".join(pairs)


def redact_url(url: str | httpx.URL) -> str:
    """`url` with secret-looking query values and any userinfo password replaced by `***`."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:  # not a URL we can take apart: show nothing of it rather than all
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if has_password else netloc
    fragment = _redact_pairs(parts.fragment) if "=" in parts.fragment else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_pairs(parts.query), fragment))


def redact_urls_in(text: str) -> str:
    """`text` with every http(s) URL in it passed through `redact_url`."""
    return _URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)


def _credential_forms(value: str) -> set[str]:
    forms = {value}
    scheme, _, credential = value.partition(" ")
    credential = credential.strip()
    if credential:
        forms.add(credential)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            if decoded:
                forms.update({decoded, decoded.partition(":")[2]})
    return forms


class Redactor:
    """Removes registered secrets and one request's own credentials from text."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        found = {v for v in values if len(v) >= MIN_MASKED_LENGTH}
        # Longest first, so a value containing another is removed whole.
        self._values = sorted(found, key=len, reverse=True)

    @classmethod
    def for_request(cls, request: httpx.Request) -> Redactor:
        values: set[str] = set()
        for name, value in request.headers.items():
            if is_secret_name(name):
                values |= _credential_forms(value)
        for name, value in request.url.params.multi_items():
            if is_secret_name(name):
                values.add(value)
        # The same values as they appear in the raw URL (percent-encoded).
        for pair in request.url.query.decode("ascii", "replace").split("&"):
            name, sep, raw = pair.partition("=")
            if sep and is_secret_name(unquote_plus(name)):
                values.add(raw)
        if request.url.password:
            values.add(request.url.password)
        return cls(values)

    def text(self, text: str) -> str:
        text = mask(text)
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def url(self, url: str | httpx.URL) -> str:
        return self.text(redact_url(url))
