"""Retention: which snapshots go (:mod:`.decide`, pure) and making it so (:mod:`.run`).

The daemon forgets and prunes on one store, records each object prune removed as a
tombstone, and after the policy's ``prune.delete_delay`` removes the same objects from
the other stores.
"""
