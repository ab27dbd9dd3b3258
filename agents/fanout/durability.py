"""When is an upload durable? Pure decisions, no I/O and no clock.

An upload goes to every store at once. restic gets its answer as soon as the outcome is
certain: 200 once ``min_copies`` stores acknowledged the object, 500 once so many stores
failed that ``min_copies`` can no longer be reached. The other stores' writes carry on
in the background either way; they change the report, not restic's answer.
"""

from __future__ import annotations

import enum


class Decision(enum.Enum):
    """What restic is told about one upload."""

    PENDING = "pending"  # not yet known: wait for more stores
    DURABLE = "durable"  # answer 200
    FAILED = "failed"  # answer 500: restic retries, then fails the backup


def decide(*, min_copies: int, acknowledged: int, failed: int, stores: int) -> Decision:
    """The decision for an upload sent to ``stores`` stores, of which ``acknowledged``
    have stored it and ``failed`` have given up on it (the rest are still writing).

    Raises:
        ValueError: counts that do not add up (negative, or more outcomes than stores),
            or ``min_copies`` outside 1..stores.
    """
    if not 1 <= min_copies <= stores:
        raise ValueError(f"min_copies must be between 1 and {stores}, not {min_copies}")
    if acknowledged < 0 or failed < 0 or acknowledged + failed > stores:
        raise ValueError(
            f"{acknowledged} acknowledged and {failed} failed do not fit {stores} stores"
        )
    if acknowledged >= min_copies:
        return Decision.DURABLE
    still_writing = stores - acknowledged - failed
    if acknowledged + still_writing < min_copies:
        return Decision.FAILED
    return Decision.PENDING


def is_durable(copies: int, min_copies: int) -> bool:
    """True when an object held by ``copies`` stores is durable under ``min_copies``."""
    return copies >= min_copies
