"""Why the centre refuses an agent's (or later an operator's) request.

Services raise these; the API maps each kind to one HTTP status in
:mod:`drd.api.errors`, and the CLI, should one reach it, exits 2. The message is the
``detail`` the caller sees: one line saying what is wrong and what to do, never a
secret.
"""

from __future__ import annotations

from drd.errors import EXIT_USAGE, DrdError


class Refused(DrdError):
    """A request the centre will not carry out as it stands."""

    exit_status = EXIT_USAGE


class BadRequest(Refused):
    """The request is well-formed JSON but its content is wrong (HTTP 400)."""


class NotAuthenticated(Refused):
    """No credential, or one the centre does not accept: unknown, forged, expired
    or revoked (HTTP 401)."""


class NotAllowed(Refused):
    """A valid credential that may not do this (HTTP 403)."""


class NotFound(Refused):
    """The thing named does not exist, or not for this caller (HTTP 404)."""


class Conflict(Refused):
    """The request clashes with the catalog's state: a used token, a system enrolled
    already, a different manifest recorded before (HTTP 409)."""


class TooLarge(Refused):
    """The request is larger than the centre takes from this caller (HTTP 413)."""


class TooBusy(Refused):
    """As much of this work runs already as the centre allows; try again later (HTTP
    429)."""
