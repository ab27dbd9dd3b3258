"""Bringing back objects that a store still holds beneath a delete marker or an overwrite.

In a store with versions (an S3 bucket with Object Lock) a delete adds a delete marker
and an overwrite a new version: the locked versions stay, but restic, and every reader
of current objects, sees the object gone or wrong. drd finds the newest *good* version
-- bytes that hash to the object's name, or, for ``config``, the sealed password and
manifests, that match the digest the catalog recorded (:mod:`drd.recorded`) -- and puts
its bytes back as the current version, with an audit entry.

- :mod:`~drd.repair.decide` (pure): a key's history of versions and which one to bring
  back;
- :mod:`~drd.repair.versions`: reading and judging versions in a store, and writing one
  back (why a copy, never the removal of a marker, is said there);
- :mod:`~drd.repair.repository`: one system's repository in one store, with the ledger,
  the audit log (``object.repair``) and the ``tamper`` alert.

Who calls it: ``drd repair STORE`` (:mod:`drd.services.repair`); verification, which
heals a hidden or overwritten object from a good version in its own store or another's
(:mod:`drd.verification.run`); replication, which brings a hidden object back in place
rather than copy it over from another store (:mod:`drd.replication.run`); and restores
and drills, which repair the store they read before restic opens it.
"""
