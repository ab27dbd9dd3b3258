"""The enrollment token's text form: encoding, decoding and checking it. Pure, no I/O.

A token is one line (``docs/agent-protocol.md``, "Enrollment token")::

    drd-enroll-1.<base64url(JSON payload), no padding>

with the payload ``{"server", "ca_sha256", "system", "expires", "secret"}``. The catalog
keeps only :func:`token_hash` of the whole line. The agent decodes the same text to learn
where the centre is and which CA to pin, so this module needs nothing but the standard
library and :mod:`drd.names`; ``drd-agent enroll`` may import it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import dataclass

from drd.errors import UserError
from drd.names import is_valid_name
from drd.secrets import Secret

PREFIX = "drd-enroll-1."
MAX_TOKEN_LENGTH = 4096
SECRET_BYTES = 32

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}$")
_PAYLOAD_KEYS = ("server", "ca_sha256", "system", "expires", "secret")


class TokenFormatError(UserError):
    """Text that is not a well-formed enrollment token (mistyped, cut short or forged)."""


@dataclass(frozen=True, repr=False)
class EnrollmentToken:
    """A decoded enrollment token. ``text`` is the whole token line (a secret)."""

    server: str
    ca_sha256: str
    system: str
    expires: dt.datetime
    text: Secret

    def __repr__(self) -> str:
        return (f"EnrollmentToken(server={self.server!r}, system={self.system!r}, "
                f"expires={self.expires.isoformat()!r}, text={self.text!r})")

    @property
    def hash(self) -> str:
        """What the catalog keeps of this token (:func:`token_hash`)."""
        return token_hash(self.text)


def rfc3339(moment: dt.datetime) -> str:
    """``moment`` as RFC 3339 UTC to the second (``2026-12-02T10:00:00Z``).

    Raises ``ValueError`` for a naive datetime.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give it a time zone")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_token(server: str, ca_sha256: str, system: str, expires: dt.datetime,
              secret: str | None = None) -> EnrollmentToken:
    """Make a token for ``system`` valid until ``expires`` (kept to the whole second).

    ``secret`` (43 characters of base64url) is random unless given (tests). Raises
    :class:`TokenFormatError` if a field would not decode again (a bad server URL,
    fingerprint or system name).
    """
    payload = {
        "server": server,
        "ca_sha256": ca_sha256,
        "system": system,
        "expires": rfc3339(expires),
        "secret": secret if secret is not None else secrets.token_urlsafe(SECRET_BYTES),
    }
    data = json.dumps(payload, separators=(",", ":")).encode()
    text = PREFIX + base64.urlsafe_b64encode(data).decode().rstrip("=")
    return decode_token(text)


def decode_token(text: str | Secret) -> EnrollmentToken:
    """Decode and check the form of a token; nothing is looked up.

    Surrounding whitespace is ignored (a token pasted with its newline). Raises
    :class:`TokenFormatError` saying what is wrong: not a drd token, an unknown version,
    damaged base64 or JSON, a missing or malformed field. Whether the token is known,
    used or expired is for the centre to say.
    """
    value = (text.reveal() if isinstance(text, Secret) else text).strip()
    if len(value) > MAX_TOKEN_LENGTH:
        raise TokenFormatError("not a drd enrollment token: far too long")
    if not value.startswith(PREFIX):
        if value.startswith("drd-enroll-"):
            raise TokenFormatError("an enrollment token of an unknown version: upgrade drd")
        raise TokenFormatError(
            "not a drd enrollment token (it starts with 'drd-enroll-1.'): copy the whole "
            "line that 'drd system token' printed"
        )
    encoded = value[len(PREFIX):]
    try:
        data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        payload = json.loads(data)
    except (binascii.Error, ValueError):
        raise TokenFormatError("a damaged enrollment token (its text was cut or changed): "
                               "copy the whole line again") from None
    if not isinstance(payload, dict):
        raise TokenFormatError("a damaged enrollment token: no payload")
    missing = [key for key in _PAYLOAD_KEYS if not isinstance(payload.get(key), str)]
    if missing:
        raise TokenFormatError(f"a damaged enrollment token: no {', '.join(missing)}")
    server, fingerprint = payload["server"], payload["ca_sha256"]
    if not server.startswith(("https://", "http://")) or len(server) > 2048:
        raise TokenFormatError(f"a damaged enrollment token: bad server URL {server[:80]!r}")
    if not _HEX64.fullmatch(fingerprint):
        raise TokenFormatError("a damaged enrollment token: ca_sha256 is not 64 hex digits")
    if not is_valid_name(payload["system"]):
        raise TokenFormatError("a damaged enrollment token: bad system name")
    if not _SECRET.fullmatch(payload["secret"]):
        raise TokenFormatError("a damaged enrollment token: bad secret")
    try:
        expires = dt.datetime.fromisoformat(payload["expires"])
    except ValueError:
        raise TokenFormatError("a damaged enrollment token: bad expiry time") from None
    if expires.tzinfo is None:
        raise TokenFormatError("a damaged enrollment token: expiry time without a zone")
    return EnrollmentToken(server=server.rstrip("/"), ca_sha256=fingerprint,
                           system=payload["system"], expires=expires.astimezone(dt.UTC),
                           text=Secret(value))


def token_hash(text: str | Secret) -> str:
    """The SHA-256 (hex) of a token's whole text: what the catalog keeps.

    Surrounding whitespace is dropped first, as :func:`decode_token` does.
    """
    value = (text.reveal() if isinstance(text, Secret) else text).strip()
    return hashlib.sha256(value.encode()).hexdigest()


def token_state(*, expires_at: dt.datetime | None, used_at: dt.datetime | None,
                revoked_at: dt.datetime | None, now: dt.datetime) -> str:
    """Whether a one-time token may still be used: ``"valid"``, ``"used"``, ``"revoked"``
    or ``"expired"`` (checked in that order of precedence: used, revoked, expired)."""
    if used_at is not None:
        return "used"
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "valid"
