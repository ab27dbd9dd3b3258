"""Writing the audit log: who did what to what, in the same transaction as the change.

Record the entry in the session that makes the change, so that the change and its audit
line commit together or not at all::

    with catalog.session() as session:
        session.add(store)
        audit.record(session, actor="admin:alice", action="store.add", target="dc-a",
                     endpoint=store.endpoint)

Details must be JSON values and must never hold a secret.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from drd.catalog.models import AuditEntry
from drd.catalog.types import utcnow


def record(
    session: Session, actor: str, action: str, target: str | None, **details: Any
) -> AuditEntry:
    """Add an audit entry to ``session`` (written when the session commits) and return it.

    ``actor`` is who (``"cli:root"``, ``"token:ops-1"``, ``"scheduler"``), ``action`` a
    dotted verb (``"escrow.unseal"``), ``target`` what it acted on. Raises ``TypeError``
    if a detail is not a JSON value (a datetime, a :class:`~drd.secrets.Secret`: convert
    the first to ISO text, never log the second).
    """
    try:
        json.dumps(details)
    except (TypeError, ValueError) as error:
        raise TypeError(f"audit details for {action!r} must be JSON values: {error}") from None
    entry = AuditEntry(at=utcnow(), actor=actor, action=action, target=target, details=details)
    session.add(entry)
    return entry
