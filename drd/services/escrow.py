"""Unsealing a system's escrowed repository password, for the centre's keyed work.

The agent sealed its restic password to the centre's escrow key at enrollment
(:func:`drd.crypto.seal.seal`, context :func:`password_context`). The centre unseals it
only to run restic itself (``restic check``, retention, drills, restores), keeps it in
memory only, and writes every unsealing to the audit log -- committed before the
password is handed out, so no use goes unrecorded.
"""

from __future__ import annotations

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import System
from drd.crypto.errors import CryptoError
from drd.crypto.keystore import KeyStore
from drd.crypto.seal import password_context, unseal
from drd.errors import OperationError, UserError
from drd.secrets import Secret


def unseal_password(catalog: Catalog, keystore: KeyStore, system: str, *, actor: str,
                    reason: str) -> Secret:
    """``system``'s restic password, after an audit entry ``escrow.unseal`` is committed.

    ``actor`` is who asks (``"scheduler"``, ``"cli:root"``), ``reason`` what for
    (``"restic check on dc-a"``). Raises :class:`UserError` for an unknown system,
    :class:`OperationError` when it has no escrowed password or it does not unseal with
    this centre's escrow key.
    """
    with catalog.session() as session:
        row = session.scalar(sa.select(System).where(System.name == system))
        if row is None:
            raise UserError(f"no system named {system!r} (see drd status)")
        if row.sealed_password is None:
            raise OperationError(f"system {system!r} has no escrowed password: it has not "
                                 "enrolled")
        sealed = row.sealed_password
        audit.record(session, actor=actor, action="escrow.unseal", target=system,
                     reason=reason)
    try:
        return Secret(unseal(keystore.escrow_private_key(), sealed,
                             password_context(system)).decode())
    except (CryptoError, UnicodeDecodeError):
        raise OperationError(f"the escrowed password of {system!r} does not unseal with this "
                             "centre's escrow key (was the catalog restored from another "
                             "centre?)") from None
