"""Objects not named by their hash, checked against the digest the catalog recorded.

Restic names every object under ``data/``, ``index/``, ``snapshots/`` and ``keys/`` by
the SHA-256 of its bytes (:func:`drd.ledger.expected_sha256`): a copy proves itself.
Three kinds of object in a system's repository do not:

- ``config``, restic's (a fixed name);
- ``drd/escrow/password.sealed``, the repository password sealed to the escrow key, put
  by the agent at enrollment;
- ``drd/manifests/<snapshot id>.json.sealed`` and ``.json.sig``, a snapshot's manifest
  sealed to the escrow key and its detached signature (over the plaintext), put by the
  agent after each backup; agents before sealing put the plaintext ``<id>.json``
  instead, still checked the same way.

A copy of one of these is right when its bytes have the SHA-256 and size the catalog
recorded when the object was first written (:class:`~drd.catalog.models.RecordedObject`)
-- never because most copies agree: whoever holds one agent's store keys can write the
same forgery into every store without Object Lock, and a majority of unlocked copies
proves nothing. A copy that does not match is damaged: verification heals it from a copy
that matches (a locked one first) and raises a ``tamper`` alert; replication copies such
an object only from a copy that matches.

Where the records come from:

- ``config``: the agent's enrollment request (the digest of the config its ``restic
  init`` wrote); for a system enrolled by an older agent, the first locked copy (Object
  Lock retention in force) the centre reads; failing that, an ``unverifiable`` alert,
  and ``config`` is neither healed nor copied;
- the sealed password: enrollment (the sealed bytes the agent sent and put in the
  stores); for older systems, the catalog's ``System.sealed_password``;
- manifests: when the agent uploads one (:func:`drd.services.snapshots.store_manifest`):
  the sealed object's digest and size as the agent reports them, once the centre has
  sealed the canonical bytes again from the object's head and got the same (the
  catalog keeps that 45-byte head, not the ciphertext, and so can write the object back:
  :func:`~drd.recorded.catalog.catalog_bytes`); the signature document's from its bytes.
  For a plaintext manifest, from the canonical bytes.

Modules: :mod:`~drd.recorded.keys` (names and formats, light enough for the agent),
:mod:`~drd.recorded.judge` (pure decisions), :mod:`~drd.recorded.catalog` (the records:
:func:`~drd.recorded.catalog.record_object` is the one call that records a key's
expected digest) and :mod:`~drd.recorded.copies` (reading the stores' copies, learning
``config`` from a locked copy, the alerts).
"""
