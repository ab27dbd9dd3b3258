"""Enrollment tokens (``drd-enroll-1.<base64url JSON>``): parsing and checking, pure.

A token is what ``drd system token`` prints and ``drd-agent enroll --token-file`` takes
(``docs/agent-protocol.md``). Its payload names the centre (``server``), pins the centre's
CA (``ca_sha256``: SHA-256 of the CA certificate's DER), names the system and says when
the token expires. Everything here is checked before the agent makes any network call,
so a mistyped, truncated or expired token fails at once with a message that says what
to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from drd.errors import UserError
from drd.secrets import Secret
from drd.services.enrollment_token import decode_token

_NEW_TOKEN = "ask the centre for a new one ('drd system token SYSTEM --department D --policy P')"


@dataclass(frozen=True)
class EnrollmentToken:
    """A parsed enrollment token.

    ``text`` is the whole token (the credential sent back to the centre, never shown);
    ``server`` the centre's URL as the token names it; ``ca_sha256`` lowercase hex;
    ``expires`` timezone-aware.
    """

    text: Secret = field(repr=False)
    server: str
    ca_sha256: str
    system: str
    expires: datetime


def parse_token(text: str, now: datetime) -> EnrollmentToken:
    """Parse ``text`` as an enrollment token and check that it has not expired at ``now``.

    The token's form is decoded by :func:`drd.services.enrollment_token.decode_token`,
    the one definition of the format, shared with the centre.

    Args:
        text: the token as printed by ``drd system token`` (surrounding whitespace is
            ignored).
        now: the current time, timezone-aware.

    Returns:
        The parsed token, its server URL normalised (:func:`normalise_server_url`).

    Raises:
        UserError: not a token (wrong prefix, bad base64, not a JSON object, a missing or
            malformed field), a token of another version, or an expired token. The
            message never repeats the token.
    """
    decoded = decode_token(text or "")
    server = normalise_server_url(decoded.server, what="the token's server URL")
    if now >= decoded.expires:
        raise UserError(f"the enrollment token for system {decoded.system!r} expired at "
                        f"{decoded.expires.isoformat()}; {_NEW_TOKEN}")
    return EnrollmentToken(text=decoded.text, server=server, ca_sha256=decoded.ca_sha256,
                           system=decoded.system, expires=decoded.expires)


def normalise_server_url(url: str, *, what: str = "the server URL") -> str:
    """``url`` as ``scheme://host[:port][/path]``: scheme and host lowercase, no default
    port, no trailing slash. Two URLs name the same centre when these forms are equal.

    Raises:
        UserError: not an ``http``/``https`` URL with a host, or one with credentials, a
            query or a fragment.
    """
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError as error:
        raise UserError(f"{what} {text!r} is not a valid URL: {error}") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise UserError(f"{what} {text!r} is not an http(s)://HOST[:PORT] URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UserError(f"{what} must be a plain http(s)://HOST[:PORT] URL, without "
                        "credentials, query or fragment")
    scheme = parts.scheme.lower()
    if port in ({"http": 80, "https": 443}[scheme], None):
        port_text = ""
    else:
        port_text = f":{port}"
    shown_host = f"[{host}]" if ":" in host else host
    path = parts.path.rstrip("/")
    return f"{scheme}://{shown_host}{port_text}{path}"
