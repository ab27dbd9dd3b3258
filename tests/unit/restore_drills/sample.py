"""A schema-1 drill report and a history, shared by the report tests."""

from __future__ import annotations

import copy
from typing import Any

SNAPSHOT = "ab" * 32

_REPORT: dict[str, Any] = {
    "schema": 1, "id": 12, "system": "fs1", "department": "finance", "policy": "fileserver",
    "store": "region-b", "region": "eu-2", "snapshot": SNAPSHOT,
    "snapshot_time": "2026-11-27T18:00:00+00:00",
    "snapshots": [{"id": SNAPSHOT, "kind": "paths", "time": "2026-11-27T18:00:00+00:00",
                   "paths": ["/srv/share"]}],
    "started_at": "2026-11-27T19:00:00+00:00", "finished_at": "2026-11-27T19:00:42+00:00",
    "trigger": "cli", "passed": False,
    "reasons": ["manifest: 1 file differs from the agent's manifest: /srv/share/a.txt"],
    "rto_seconds": 12.5, "rpo_seconds": 3600.0,
    "targets": {"rto_seconds": 14400.0, "rpo_seconds": 3600.0},
    "phases": {"unseal": 0.01, "restore": 9.1, "verify": 2.2, "manifest": 1.1,
               "control": 0.01, "checks": 0.2},
    "checks": {
        "restic_verify": {"passed": True, "detail": "restic restore --verify: 5204 files"},
        "file_count": {"passed": True, "detail": "5204 files restored, 5204 expected"},
        "manifest": {"passed": False, "detail": "1 of 5204 files differ: /srv/share/a.txt"},
        "negative_control": {"passed": True, "detail": "a byte changed in /srv/share/b caught"},
        "app:app-db": {"passed": True, "detail": "exit 0, stdout 'ok'"},
        "rto": {"passed": True, "detail": "12.5 s within 4h"},
    },
    "affected_files": ["/srv/share/a.txt"],
    "restore": {"mode": "all", "percent": 100, "paths": [], "files": 5204, "bytes": 444000000,
                "expected_files": 5204, "expected_bytes": 444000000},
    "posture": {"copies": 3, "regions": 2, "offsite": 1, "immutable": 1, "errors": 1,
                "met": False, "stores": [{"name": "dc-a", "region": "eu-1", "complete": True,
                                          "object_lock": False}], "notes": []},
    "versions": {"drd": "0.1.0", "restic": "0.14.0"},
}

HISTORY: list[dict[str, Any]] = [
    {"id": 10, "store": "dc-a", "started_at": "2026-11-25T19:00:00+00:00", "passed": True,
     "rto_seconds": 10.0},
    {"id": 11, "store": "dc-b", "started_at": "2026-11-26T19:00:00+00:00", "passed": None,
     "rto_seconds": None},
    {"id": 12, "store": "region-b", "started_at": "2026-11-27T19:00:00+00:00",
     "passed": False, "rto_seconds": 12.5},
]


def report(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the sample report with ``changes`` applied at the top level."""
    return {**copy.deepcopy(_REPORT), **changes}
