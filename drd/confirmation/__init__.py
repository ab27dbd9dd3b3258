"""Reports are claims: whether a reported snapshot counts (:mod:`.decide`, pure) and
looking for it in the stores (:mod:`.run`).

An agent's report is recorded ``unconfirmed``. The daemon's confirmation step (run by
the system's replication job, before and after its pass) reads ``snapshots/<id>`` in
each of the policy's stores; a snapshot held by ``min_copies`` of them becomes
``active`` and counts, one that the stores show cannot be there is ``rejected`` with a
``forged_report`` alert, and never becomes anyone's latest.
"""
