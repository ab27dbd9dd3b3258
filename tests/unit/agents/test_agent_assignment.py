"""The centre's assignment as the agent reads it (pure), and the progress line."""

from __future__ import annotations

import copy

import pytest

from agents.assignment import parse_assignment
from drd.console.progress import human_bytes, render
from drd.errors import OperationError
from drd.restic import ProgressEvent

DOCUMENT = {
    "system": "fs1", "department": "parks", "repository_path": "parks/fs1",
    "policy": {"policy": "fileserver", "schedule": "0 * * * *",
               "sources": [{"path": "/srv/share", "exclude": ["*.tmp"]}],
               "stores": ["dc-a", "region-b"], "min_copies": 2,
               "retention": {"keep_last": 7}, "rpo": "1h", "rto": "4h",
               "manifest": {"sample_percent": 100.0}},
    "policy_version": 3,
    "stores": [{"name": "dc-a", "kind": "file", "url": "file:///vault/dc-a", "endpoint": None,
                "region": "region-a", "object_lock": False, "access_key_id": None,
                "secret_access_key": None},
               {"name": "region-b", "kind": "s3", "url": "s3://bucket/city/",
                "endpoint": "http://127.0.0.1:8333", "region": "region-b", "object_lock": True,
                "access_key_id": "AKIA", "secret_access_key": "s3-secret-value"}],
    "escrow_public_key": "-----BEGIN PUBLIC KEY-----\n...",
}


def test_a_good_assignment():
    assignment = parse_assignment(DOCUMENT)
    assert (assignment.system, assignment.department) == ("fs1", "parks")
    assert assignment.policy.min_copies == 2 and assignment.policy_version == 3
    assert [store.name for store in assignment.stores] == ["dc-a", "region-b"]
    s3 = assignment.stores[1]
    assert s3.secret_access_key.reveal() == "s3-secret-value"
    assert "s3-secret-value" not in repr(assignment)
    spec = s3.spec(assignment.repository_path)
    assert spec.url == "s3://bucket/city/parks/fs1" and spec.object_lock is True
    assert assignment.stores[0].spec("parks/fs1").url == "file:///vault/dc-a/parks/fs1"


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("system"), "system is missing"),
    (lambda d: d.update(repository_path="../etc"), "repository_path"),
    (lambda d: d.update(policy_version="3"), "policy_version"),
    (lambda d: d.update(stores=[]), "no stores"),
    (lambda d: d["policy"].update(min_copies=0), "policy does not validate (min_copies"),
    (lambda d: d["policy"].update(surprise=1), "policy does not validate (surprise"),
    (lambda d: d["stores"].append(dict(d["stores"][0])), "named twice"),
    (lambda d: d["stores"][0].pop("url"), "url is missing"),
])
def test_an_unusable_assignment_says_why(change, words):
    document = copy.deepcopy(DOCUMENT)
    change(document)
    with pytest.raises(OperationError, match="cannot use") as caught:
        parse_assignment(document)
    assert words in str(caught.value)


def test_the_progress_line():
    event = ProgressEvent(percent_done=0.5, files_done=10, total_files=20, bytes_done=1536,
                          total_bytes=3 << 20, seconds_remaining=125)
    assert render(event, "backup", width=10) == (
        "backup [#####-----]  50.0%  10/20 files  1.5 KiB/3.0 MiB  2:05 left")
    assert human_bytes(0) == "0 B" and human_bytes(5 << 40) == "5.0 TiB"
    assert render(ProgressEvent(percent_done=2.0), "x", width=4).startswith("x [####] 100.0%")
