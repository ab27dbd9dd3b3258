"""The centre surviving its own disaster: the recovery kit and the catalog copies.

- :mod:`drd.recovery.kit`: the recovery kit, the centre's private keys under a
  passphrase, kept offline by administrators (``drd keys export-recovery-kit``).
- :mod:`drd.recovery.container`: the encrypted, signed container a catalog copy is
  written in (sealed to the escrow key, signed with the signing key, streamed in chunks).
- :mod:`drd.recovery.dump`: the catalog as a stream of JSON lines, and loading it back.
- :mod:`drd.recovery.copies`: writing copies into every store, finding them again.
- :mod:`drd.recovery.rebuild`: ``drd recover-catalog``, a new centre from one store.

See ``docs/recovery.md`` for the administrators' side.
"""
