"""The agent protocol's messages and the checks of enrollment's key and sealed password."""

from __future__ import annotations

import base64
import copy
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import ValidationError

from drd.crypto.pem import public_key_pem
from drd.crypto.seal import seal
from drd.services.enrollment import check_agent_public_key, check_sealed_password
from drd.services.protocol import HeartbeatRequest, ManifestUpload, SnapshotReport
from drd.services.refusals import BadRequest
from drd.services.snapshots import canonical_json, copy_state

REPORT = {
    "report_id": "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
    "snapshot_id": "a" * 64, "time": "2026-12-02T10:00:00Z", "hostname": "fs1.parks",
    "paths": ["/srv/share"], "tags": ["drd-run:x"], "tree": "b" * 64, "files": 5204,
    "bytes": 444000000, "duration_seconds": 9.4,
    "stores": {"dc-a": {"complete": True, "missing_objects": 0, "missing": []},
               "region-b": {"complete": False, "missing_objects": 3,
                            "missing": ["data/ab/" + "ab" * 32]}},
    "manifest_sha256": "c" * 64, "partial": False,
}


def _report(**changes) -> dict:
    report = copy.deepcopy(REPORT)
    report.update(changes)
    return report


def test_the_documented_report_is_valid_and_extra_fields_are_ignored() -> None:
    report = SnapshotReport.model_validate(_report(added_in_version_2="yes"))
    assert report.stores["region-b"].missing_objects == 3
    assert not hasattr(report, "added_in_version_2")
    uppercase = SnapshotReport.model_validate(_report(report_id=REPORT["report_id"].upper()))
    assert uppercase.report_id == REPORT["report_id"]


@pytest.mark.parametrize("changes", [
    {"report_id": "not-a-uuid-but-thirty-six-characters"},
    {"report_id": str(uuid.uuid4()) + "0"},
    {"snapshot_id": "A" * 64},
    {"snapshot_id": "a" * 63},
    {"tree": None},
    {"time": "2026-12-02T10:00:00"},  # no time zone
    {"files": -1},
    {"bytes": 2**63},
    {"duration_seconds": float("nan")},
    {"duration_seconds": -1},
    {"stores": {}},
    {"stores": {"Bad Name": {"complete": True}}},
    {"stores": {"dc-a": {"complete": True, "missing_objects": 2}}},
    {"stores": {"dc-a": {"complete": False, "missing_objects": 1,
                         "missing": ["data/aa/1", "data/aa/2"]}}},
    {"stores": {"dc-a": {"complete": False, "missing_objects": 1, "missing": ["../x"]}}},
    {"stores": {"dc-a": {}}},
    {"hostname": ""},
    {"hostname": "host\nname"},
    {"hostname": "h" * 254},
    {"paths": "/srv/share"},
    {"manifest_sha256": "z" * 64},
    {"time": "9999-12-31T23:59:59-23:59"},  # overflows when converted to UTC
    {"time": "0001-01-01T00:00:00+23:59"},
    {"time": "1960-01-01T00:00:00Z"},
    {"bytes": True},  # no coercion of booleans into counts
    {"files": "12"},
    {"partial": 1},
    {"stores": {"dc-a": {"complete": 1, "missing_objects": 0, "missing": []}}},
    {"hostname": "a\u009b2J"},  # a C1 control (CSI) would rewrite a terminal
    {"tags": ["x\u0085"]},
    {"paths": ["/srv/\x1b[2Jshare"]},
])
def test_bad_reports_are_refused(changes: dict) -> None:
    with pytest.raises(ValidationError):
        SnapshotReport.model_validate(_report(**changes))


def test_heartbeat_and_manifest_bodies() -> None:
    beat = HeartbeatRequest.model_validate({"hostname": "fs1", "agent_version": "0.1.0",
                                            "restic_version": "0.17.3",
                                            "last_backup_at": None, "spooled_reports": 0})
    assert beat.spooled_reports == 0
    with pytest.raises(ValidationError):
        HeartbeatRequest.model_validate({"hostname": "fs1", "agent_version": "x",
                                         "restic_version": "y", "spooled_reports": -1})
    with pytest.raises(ValidationError):
        ManifestUpload.model_validate({"manifest": [1, 2], "signature": "AA=="})


SEALED = {"head": "A" * 60, "sha256": "a" * 64, "size": 200, "key": "b" * 64}


def test_a_manifest_upload_may_describe_its_sealed_copy() -> None:
    assert ManifestUpload.model_validate({"manifest": {}, "signature": "AA=="}).sealed is None
    upload = ManifestUpload.model_validate({"manifest": {}, "signature": "AA==",
                                            "sealed": SEALED})
    assert upload.sealed is not None and upload.sealed.size == 200


@pytest.mark.parametrize("change", [
    {"head": "A" * 59}, {"head": "A" * 61}, {"sha256": "A" * 64}, {"size": 60},
    {"size": "200"}, {"key": "b" * 63}, {"key": None}])
def test_a_sealed_copy_described_wrongly_is_refused(change) -> None:
    with pytest.raises(ValidationError):
        ManifestUpload.model_validate({"manifest": {}, "signature": "AA==",
                                       "sealed": SEALED | change})


def test_canonical_json_is_sorted_compact_and_ascii() -> None:
    document = {"b": [1, 2.5, None], "a": {"z": "é", "y": True}}
    assert canonical_json(document) == b'{"a":{"y":true,"z":"\\u00e9"},"b":[1,2.5,null]}'
    assert canonical_json(dict(reversed(document.items()))) == canonical_json(document)


def test_copy_state_of_a_report() -> None:
    assert (copy_state(True), copy_state(False)) == ("present", "missing")


def test_an_ed25519_pem_is_accepted_and_re_encoded() -> None:
    pem = public_key_pem(Ed25519PrivateKey.generate().public_key()).decode()
    assert check_agent_public_key("\n" + pem + "\n") == pem


@pytest.mark.parametrize("text", [
    "", "not a key",
    public_key_pem(X25519PrivateKey.generate().public_key()).decode(),  # wrong kind
])
def test_other_agent_keys_are_refused(text: str) -> None:
    with pytest.raises(BadRequest, match="agent_public_key"):
        check_agent_public_key(text)


def test_a_sealed_password_is_checked_for_form_only() -> None:
    blob = seal(X25519PrivateKey.generate().public_key(), b"p" * 43, b"context")
    assert check_sealed_password(base64.b64encode(blob).decode()) == blob


@pytest.mark.parametrize(("blob", "message"), [
    (b"\x02" + b"x" * 100, "known version"),
    (b"\x01" + b"x" * 60, "bytes"),  # header, nonce and tag, but no secret
    (b"\x01" + b"x" * 5000, "bytes"),
    (b"", "known version"),
])
def test_implausible_sealed_passwords_are_refused(blob: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        check_sealed_password(base64.b64encode(blob).decode())


def test_a_sealed_password_must_be_base64() -> None:
    with pytest.raises(BadRequest, match="not base64"):
        check_sealed_password("***")
