"""Secrets that never print: a redacting wrapper and a masker for log and error text.

A :class:`Secret` prints as ``**redacted**`` in ``str``, ``repr`` and f-strings, so a
secret that ends up in a log line, an exception or a debug dump does not leak.
:func:`mask` removes known secret values from free text (restic's stderr, say) before
it is logged or carried in an exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "**redacted**"


class Secret:
    """A secret string. ``reveal()`` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        if isinstance(value, bytes):
            value = value.decode()
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # never pickle a secret by accident
        raise TypeError("a Secret cannot be pickled")


# user:password@ in URLs (rest:http://user:pw@host/, s3 URLs with inline keys)
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.IGNORECASE
)


def mask(text: str, secrets: Iterable[Secret | str | None] = ()) -> str:
    """Return ``text`` with every given secret value, and URL passwords, replaced.

    Values shorter than 4 characters are not masked: they would mangle ordinary words
    and are too short to be a real secret anyway.
    """
    values = []
    for secret in secrets:
        if secret is None:
            continue
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and len(value) >= 4:
            values.append(value)
    # longest first, so a secret containing another is masked whole
    for value in sorted(set(values), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def url_password(url: str) -> str | None:
    """The password inlined in a URL (``scheme://user:password@host``), or None.

    Also finds it behind restic's backend prefix (``rest:http://user:password@...``).
    """
    match = _URL_CREDENTIALS.search(url)
    if match is None:
        return None
    return url[match.end("user") + 1:match.end() - 1]


# Libraries that log what goes over the wire at DEBUG: botocore prints whole response
# bodies (IAM's CreateAccessKey answer holds the new secret key), urllib3 and httpcore
# request lines and headers. Their DEBUG is never drd's.
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "httpcore", "httpx")


def quiet_wire_loggers() -> None:
    """Hold the :data:`WIRE_LOGGERS` at WARNING, whatever ``-v`` asks of the rest: drd's
    own DEBUG lines go through :func:`mask`; theirs would carry secrets as they are."""
    import logging

    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

