"""Manifests: the deterministic sample, canonical signing, sealing for the stores, and
which files are listed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agents.excludes import rooted_patterns
from agents.manifest import (
    build_manifest,
    canonical_bytes,
    command_digests,
    in_sample,
    manifest_sha256,
    seal_manifest,
    sign_manifest,
    walk_sources,
)
from drd.crypto.errors import CryptoError
from drd.crypto.seal import manifest_context, recipient_fingerprint, unseal
from drd.crypto.signing import public_key_fingerprint, verify

SNAPSHOT = "0d75d4202c7c41e2637dcc8ddf696e430e53a6884aed1a751bcd339a0d19e41a"


def test_the_sample_is_deterministic_and_close_to_the_percentage():
    paths = [f"/srv/share/d{i % 50}/f{i}.bin" for i in range(20_000)]
    first = [path for path in paths if in_sample(path, 10)]
    assert first == [path for path in paths if in_sample(path, 10)]
    assert 1_700 < len(first) < 2_300
    assert all(in_sample(path, 100) for path in paths[:100])
    assert not any(in_sample(path, 0) for path in paths[:100])
    # a larger sample contains the smaller one: raising the percentage only adds files
    assert set(first) <= {path for path in paths if in_sample(path, 50)}


def test_canonical_bytes_sort_keys_and_drop_blanks():
    document = {"b": [1, {"z": 1, "a": "é"}], "a": None}
    assert canonical_bytes(document) == b'{"a":null,"b":[1,{"a":"\\u00e9","z":1}]}'
    assert manifest_sha256(document) == hashlib.sha256(canonical_bytes(document)).hexdigest()


def test_the_signature_covers_the_canonical_bytes_and_names_the_key():
    key = Ed25519PrivateKey.generate()
    manifest = {"snapshot_id": SNAPSHOT, "files": [{"path": "/a", "sha256": "00"}]}
    signed = sign_manifest(key, manifest)
    assert signed.data == canonical_bytes(manifest)
    verify(key.public_key(), signed.data, base64.b64decode(signed.signature_b64))
    document = json.loads(signed.signature_document())
    assert document == {"version": 1, "algorithm": "ed25519",
                        "key": public_key_fingerprint(key.public_key()),
                        "signature": signed.signature_b64}
    assert signed.object_keys() == (f"drd/manifests/{SNAPSHOT}.json.sealed",
                                    f"drd/manifests/{SNAPSHOT}.json.sig")
    assert signed.sha256 == manifest_sha256(manifest)


def test_the_stores_get_the_manifest_sealed_to_the_escrow_key_for_its_snapshot_only():
    escrow = X25519PrivateKey.generate()
    manifest = {"snapshot_id": SNAPSHOT, "files": [{"path": "/srv/secret-plans.odt"}]}
    signed = sign_manifest(Ed25519PrivateKey.generate(), manifest)
    with pytest.raises(ValueError, match="not sealed"):
        signed.stored_objects()  # the plaintext is never stored
    sealed = seal_manifest(signed, escrow.public_key(), "fs1")
    objects = sealed.stored_objects()
    assert list(objects) == list(sealed.object_keys())
    blob = objects[f"drd/manifests/{SNAPSHOT}.json.sealed"]
    assert b"secret-plans" not in blob and b"secret-plans" not in b"".join(objects.values())
    assert unseal(escrow, blob, manifest_context("fs1", SNAPSHOT)) == signed.data
    for system, snapshot in (("fs2", SNAPSHOT), ("fs1", "1" * 64), ("fs", "1:" + SNAPSHOT)):
        with pytest.raises(CryptoError):  # another system's, or another snapshot's
            unseal(escrow, blob, manifest_context(system, snapshot))
    with pytest.raises(CryptoError):
        unseal(X25519PrivateKey.generate(), blob, manifest_context("fs1", SNAPSHOT))
    # the signature is over the plaintext, as before: the centre checks it after unsealing
    assert objects[f"drd/manifests/{SNAPSHOT}.json.sig"] == signed.signature_document()
    described = sealed.seal_description()
    assert described == {"head": base64.b64encode(blob[:45]).decode(),
                         "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob),
                         "key": recipient_fingerprint(escrow.public_key())}
    # sealing is randomised: two runs never store the same bytes, nor a guessable digest
    assert seal_manifest(signed, escrow.public_key(), "fs1").sealed != blob


def test_the_walk_lists_regular_files_restic_keeps(tmp_path):
    root = tmp_path / "share"
    (root / "a" / "cache").mkdir(parents=True)
    (root / "a" / "x.txt").write_bytes(b"hello")
    (root / "a" / "skip.tmp").write_bytes(b"tmp")
    (root / "a" / "cache" / "big").write_bytes(b"c" * 10)
    (root / "empty").write_bytes(b"")
    os.symlink("a/x.txt", root / "link")
    other = tmp_path / "other.tmp"
    other.write_bytes(b"kept: not below share")
    excludes = rooted_patterns([(str(root), ["*.tmp", "cache/"]), (str(other), [])])
    digests = walk_sources([str(root), str(other)], excludes, 100)
    paths = [entry["path"] for entry in digests.files]
    assert paths == sorted([str(root / "a" / "x.txt"), str(root / "empty"), str(other)])
    entry = digests.files[paths.index(str(root / "a" / "x.txt"))]
    assert entry["size"] == 5 and entry["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert entry["mtime_ns"] == os.stat(root / "a" / "x.txt").st_mtime_ns
    assert digests.total_files == 3 and digests.total_bytes == 5 + 0 + len(b"kept: not below share")
    assert digests.unreadable == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_listed_not_fatal(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"x")
    secret.chmod(0)
    digests = walk_sources([str(tmp_path)], [], 100)
    assert digests.unreadable and digests.unreadable[0]["path"] == str(secret)


def test_a_sampled_walk_counts_every_file_but_hashes_the_sample(tmp_path):
    for index in range(200):
        (tmp_path / f"f{index}").write_bytes(b"x")
    digests = walk_sources([str(tmp_path)], [], 25)
    assert digests.total_files == 200
    assert 20 < len(digests.files) < 80
    assert all(in_sample(entry["path"], 25) for entry in digests.files)


def test_build_manifest_and_a_command_source():
    digests = command_digests("app.sql", 12, "ab" * 32)
    manifest = build_manifest(system="fs1", snapshot_id=SNAPSHOT, run_id="r",
                              created=datetime(2026, 12, 2, tzinfo=UTC), kind="command",
                              sources=["/app.sql"], excludes=[], sample_percent=100,
                              digests=digests)
    assert manifest["files"] == [{"path": "/app.sql", "size": 12, "mtime_ns": None,
                                  "sha256": "ab" * 32}]
    assert manifest["version"] == 1 and manifest["snapshot_id"] == SNAPSHOT
    assert manifest["created"] == "2026-12-02T00:00:00+00:00"
    json.dumps(manifest)  # JSON all the way down
