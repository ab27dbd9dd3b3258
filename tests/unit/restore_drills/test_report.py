"""Canonical bytes, the catalog signature of a report and the signed export files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drd.crypto.errors import BadSignature
from drd.crypto.signing import verify_file
from restore_drills.report import (
    canonical_bytes,
    json_export,
    sign_report,
    verify_report_signature,
    write_signed_export,
)
from tests.unit.restore_drills.sample import report

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def test_canonical_bytes_ignore_key_order_and_whitespace() -> None:
    reordered = dict(reversed(list(report().items())))
    assert canonical_bytes(reordered) == canonical_bytes(report())
    assert canonical_bytes({"b": 1, "a": [1.5, None]}) == b'{"a":[1.5,null],"b":1}'


def test_a_signed_report_verifies_and_any_change_fails() -> None:
    signature = sign_report(KEY, report())
    verify_report_signature(KEY.public_key(), report(), signature)
    for tampered in (report(passed=True), report(rto_seconds=12.4),
                     report(checks={**report()["checks"], "manifest": {"passed": True,
                                                                       "detail": ""}})):
        with pytest.raises(BadSignature):
            verify_report_signature(KEY.public_key(), tampered, signature)
    other = Ed25519PrivateKey.from_private_bytes(bytes(32))
    with pytest.raises(BadSignature):
        verify_report_signature(other.public_key(), report(), signature)


def test_json_export_is_deterministic_and_round_trips() -> None:
    data = json_export(report())
    assert data == json_export(dict(reversed(list(report().items()))))
    assert data.endswith(b"}\n") and json.loads(data) == report()


def test_write_signed_export_replaces_both_files_atomically(tmp_path: Path) -> None:
    path = tmp_path / "drill-12.json"
    path.write_bytes(b"old")
    (tmp_path / "drill-12.json.sig").write_bytes(b"old signature")
    signature_path = write_signed_export(KEY, json_export(report()), path)
    assert signature_path == tmp_path / "drill-12.json.sig"
    assert path.read_bytes() == json_export(report())
    verify_file(KEY.public_key(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drill-12.json", "drill-12.json.sig"]
    path.write_bytes(path.read_bytes().replace(b"12.5", b"12.6"))
    with pytest.raises(BadSignature):
        verify_file(KEY.public_key(), path)
