"""Unsealing what agents sealed to the escrow key: repository passwords and manifests.

The agent sealed its restic password to the centre's escrow key at enrollment
(:func:`drd.crypto.seal.seal`, context :func:`password_context`). The centre unseals it
only to run restic itself (``restic check``, retention, drills, restores), keeps it in
memory only, and writes every unsealing to the audit log -- committed before the
password is handed out, so no use goes unrecorded.

Each manifest in the stores is sealed to the same key (context
:func:`~drd.crypto.seal.manifest_context`). The centre keeps every manifest it was sent
in plaintext, so it unseals a store's copy only when the catalog lacks it (a drill of a
snapshot whose upload has not arrived, a catalog rebuilt from the stores): that reveals
a system's file names, not its data, and is audited the same way
(``escrow.unseal_manifest``, :func:`unseal_manifest`).
"""

from __future__ import annotations

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import System
from drd.crypto.errors import CryptoError
from drd.crypto.keystore import KeyStore
from drd.crypto.seal import manifest_context, password_context, unseal
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


def unseal_manifest(catalog: Catalog, keystore: KeyStore, system: str, snapshot_id: str,
                    sealed: bytes, *, actor: str, reason: str, store: str | None = None
                    ) -> bytes:
    """The canonical bytes of ``system``'s manifest of ``snapshot_id`` in ``sealed`` (a
    store's ``drd/manifests/<id>.json.sealed``, read from ``store``), after an audit
    entry ``escrow.unseal_manifest`` is committed. Whether they are the agent's is for
    the signature to say: the caller checks it.

    Raises :class:`OperationError` when ``sealed`` does not unseal with this centre's
    escrow key as that system's manifest of that snapshot (damaged, sealed to another
    key, or for another system or snapshot).
    """
    with catalog.session() as session:
        audit.record(session, actor=actor, action="escrow.unseal_manifest", target=system,
                     snapshot=snapshot_id, store=store, reason=reason)
    try:
        return unseal(keystore.escrow_private_key(), sealed,
                      manifest_context(system, snapshot_id))
    except CryptoError:
        raise OperationError(f"the sealed manifest of snapshot {snapshot_id[:12]} of "
                             f"{system!r}{f' in store {store}' if store else ''} does not "
                             "unseal with this centre's escrow key as that snapshot's "
                             "(damaged, or sealed for another system or snapshot)") from None
