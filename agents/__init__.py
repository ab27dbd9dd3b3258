"""The agent that runs on a department's system: ``drd-agent``.

It enrolls with a centre (:mod:`agents.enroll`), keeps its own backup schedule, working
while the centre is down (:mod:`agents.daemon`), runs restic once per source and fans
the objects out to every store of its policy (:mod:`agents.fanout`, :mod:`agents.backup`),
records signed manifests (:mod:`agents.manifest`) and reports to the centre through a
spool that survives the centre's absence (:mod:`agents.spool`, :mod:`agents.client`).

The flow, from the command line down: ``cli`` -> ``service`` (enroll, backup, heartbeat)
-> ``backup`` / ``enroll`` -> ``target`` (fan-out) / ``commands`` / ``manifest`` ->
``drd.restic``, ``drd.stores``. Pure decisions: ``token``, ``excludes``, ``assignment``,
``backup.plan_backup``, ``backup.snapshot_report``, ``manifest.in_sample``.
"""
