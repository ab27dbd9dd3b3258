"""The deterministic file sample that manifests and drills share (pure).

An agent's manifest keeps ``manifest.sample_percent`` of the files, and a drill restores
``drill.restore.percent`` of them and compares ``drill.sample_percent``: each time a file
is in the sample when the SHA-256 of its path falls in the first ``percent`` of the hash
space, so that the same files are chosen on every run and by every party.
"""

from __future__ import annotations

import hashlib
import os

_HASH_SPACE = 1 << 64


def in_sample(path: str, sample_percent: float) -> bool:
    """Whether ``path`` is in the deterministic ``sample_percent`` sample (pure)."""
    if sample_percent >= 100:
        return True
    if sample_percent <= 0:
        return False
    digest = hashlib.sha256(os.fsencode(path)).digest()
    return int.from_bytes(digest[:8], "big") < sample_percent / 100 * _HASH_SPACE
