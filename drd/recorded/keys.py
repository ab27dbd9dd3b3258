"""The keys of the objects checked against a record, and the formats drd writes them in.

Pure and light (no catalog, no store): the agent writes these objects too.
"""

from __future__ import annotations

import json
import re

CONFIG = "config"
ESCROW_KEY = "drd/escrow/password.sealed"
MANIFEST_PREFIX = "drd/manifests/"
SEALED_SUFFIX = ".sealed"
_MANIFEST = re.compile(r"drd/manifests/([0-9a-f]{64})\.json(\.sig|\.sealed)?")


def is_recorded_kind(key: str) -> bool:
    """True for the keys whose copies are checked against a record, not their name:
    ``config``, the sealed password, a manifest (sealed, ``.json.sealed``, or a plaintext
    ``.json`` an older agent wrote) and its signature."""
    return key in (CONFIG, ESCROW_KEY) or _MANIFEST.fullmatch(key) is not None


def is_drd_object(key: str) -> bool:
    """True for the recorded keys that are drd's own, not restic's (all but ``config``)."""
    return key != CONFIG and is_recorded_kind(key)


def manifest_keys(snapshot_id: str) -> tuple[str, str]:
    """The keys of a snapshot's plaintext manifest, as agents before sealing wrote it
    (``<id>.json``, still read and verified where it is), and of its detached signature."""
    key = f"{MANIFEST_PREFIX}{snapshot_id}.json"
    return key, key + ".sig"


def sealed_manifest_keys(snapshot_id: str) -> tuple[str, str]:
    """The keys of a snapshot's manifest sealed to the escrow key (``<id>.json.sealed``,
    what agents write) and of its detached signature (``<id>.json.sig``, over the
    plaintext: the same object as beside a plaintext manifest)."""
    key = f"{MANIFEST_PREFIX}{snapshot_id}.json"
    return key + SEALED_SUFFIX, key + ".sig"


def manifest_snapshot(key: str) -> str | None:
    """The snapshot id a manifest, sealed manifest or signature key belongs to; None for
    any other key."""
    match = _MANIFEST.fullmatch(key)
    return match.group(1) if match else None


def is_sealed_manifest(key: str) -> bool:
    """True for a sealed manifest's key (``drd/manifests/<id>.json.sealed``)."""
    return manifest_snapshot(key) is not None and key.endswith(SEALED_SUFFIX)


def signature_document(key_fingerprint: str, signature_b64: str) -> bytes:
    """The bytes of a manifest's ``.json.sig`` object (version 1, Ed25519).

    ``key_fingerprint`` is the SHA-256 (hex) of the agent's raw public key
    (:func:`drd.crypto.signing.public_key_fingerprint`), ``signature_b64`` the base64
    of the signature over the manifest's canonical bytes. The agent writes exactly these
    bytes and the centre records their digest, so the format is defined once, here.
    """
    return (json.dumps({"version": 1, "algorithm": "ed25519", "key": key_fingerprint,
                        "signature": signature_b64}, indent=2) + "\n").encode()
