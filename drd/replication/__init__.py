"""Keyless replication: every store of a system catches up with the others.

:mod:`drd.replication.plan` decides what to copy where (pure);
:mod:`drd.replication.run` lists the stores, keeps the ledger and the watermarks, and
copies (:func:`~drd.replication.run.replicate`).
"""
