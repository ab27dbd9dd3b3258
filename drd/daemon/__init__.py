"""The central daemon inside ``drd serve``: jobs, the work queue, leadership, workers.

- :mod:`drd.daemon.jobs`: the jobs each applied policy implies, and when they fire.
- :mod:`drd.daemon.queue`: queued work items, claimed by one daemon at a time.
- :mod:`drd.daemon.leader`: which daemon schedules (a PostgreSQL advisory lock, or a
  lock file next to a SQLite catalog), and the ``daemons`` rows.
- :mod:`drd.daemon.scheduler`: the leader's APScheduler, which queues each job's slots.
- :mod:`drd.daemon.workers`: threads that claim queued work and run it.
- :mod:`drd.daemon.service`: :class:`~drd.daemon.service.Daemon`, which ties them together.
"""
