"""The 3-2-1-1-0 summary of one system, as each drill report carries it (pure).

The rule, counted over the system's *complete* copies (stores that hold all of the
system's current backup):

- **3** copies: at least three complete copies;
- **2** regions: they lie in at least two distinct regions;
- **1** off-site: at least one lies outside the primary region, which is the region of
  the policy's first store unless the caller names another (the first store listed is
  where the system's backups land first: its site);
- **1** immutable: at least one is on a store with S3 Object Lock, and the policy locks
  new objects (``object_lock_days > 0``; with 0 no copy is immutable, whatever its
  store supports);
- **0** errors: the last verification and the last drill of the system found none.

A store whose region is unknown (None) counts towards the copies, but towards neither
the regions nor the off-site copies. :func:`assess` returns a :class:`Posture`, whose
:meth:`Posture.as_dict` is the report's ``posture`` object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NEEDED_COPIES = 3
NEEDED_REGIONS = 2
NEEDED_OFFSITE = 1
NEEDED_IMMUTABLE = 1


@dataclass(frozen=True)
class StoreCopy:
    """One store of the system: its name and region, whether it holds all of the
    system's current backup (``complete``), and whether it supports Object Lock."""

    name: str
    region: str | None
    complete: bool
    object_lock: bool


@dataclass(frozen=True)
class Posture:
    """The counts of the 3-2-1-1-0 rule, whether it is met, and what is missing."""

    copies: int
    regions: int
    offsite: int
    immutable: int
    errors: int
    met: bool
    stores: tuple[StoreCopy, ...] = ()
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The ``posture`` object of a drill report (schema 1)."""
        return {
            "copies": self.copies,
            "regions": self.regions,
            "offsite": self.offsite,
            "immutable": self.immutable,
            "errors": self.errors,
            "met": self.met,
            "stores": [{"name": store.name, "region": store.region,
                        "complete": store.complete, "object_lock": store.object_lock}
                       for store in self.stores],
            "notes": list(self.notes),
        }


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def assess(copies: Sequence[StoreCopy], verification_errors: int, drill_errors: int,
           primary_region: str | None = None, *, object_lock_days: int) -> Posture:
    """The 3-2-1-1-0 posture of a system whose stores are ``copies``, in policy order.

    ``verification_errors`` and ``drill_errors``: what the system's last verification
    and last drill found wrong (0 when they found nothing, or did not run yet).
    ``primary_region``: the system's home region; None means the region of the first
    of ``copies``. ``object_lock_days``: the policy's; 0 means nothing is immutable.
    Raises ``ValueError`` for a negative error count or ``object_lock_days``.
    """
    if verification_errors < 0 or drill_errors < 0 or object_lock_days < 0:
        raise ValueError("error counts and object_lock_days cannot be negative")
    if primary_region is None and copies:
        primary_region = copies[0].region
    complete = [copy for copy in copies if copy.complete]
    regions = {copy.region for copy in complete if copy.region is not None}
    offsite = sum(1 for copy in complete
                  if copy.region is not None and primary_region is not None
                  and copy.region != primary_region)
    immutable = sum(1 for copy in complete if copy.object_lock) if object_lock_days > 0 else 0
    errors = verification_errors + drill_errors

    notes: list[str] = []
    if len(complete) < NEEDED_COPIES:
        notes.append(f"only {_count(len(complete), 'complete copy', 'complete copies')}; "
                     f"3-2-1-1-0 needs {NEEDED_COPIES}")
    if len(regions) < NEEDED_REGIONS:
        notes.append(f"complete copies in only {_count(len(regions), 'region', 'regions')}; "
                     f"3-2-1-1-0 needs {NEEDED_REGIONS}")
    if offsite < NEEDED_OFFSITE:
        where = f"region {primary_region!r}" if primary_region else "primary region (unknown)"
        notes.append(f"no complete copy outside the {where}; 3-2-1-1-0 needs "
                     f"{NEEDED_OFFSITE} off-site")
    if immutable < NEEDED_IMMUTABLE:
        notes.append("no immutable copy: the policy locks nothing (object_lock_days is 0); "
                     "3-2-1-1-0 needs 1" if object_lock_days == 0 else
                     "no complete copy on an Object Lock store; 3-2-1-1-0 needs 1 immutable")
    if errors:
        notes.append(f"{_count(errors, 'error', 'errors')} ({verification_errors} in the last "
                     f"verification, {drill_errors} in the last drill); 3-2-1-1-0 needs 0")
    met = (len(complete) >= NEEDED_COPIES and len(regions) >= NEEDED_REGIONS
           and offsite >= NEEDED_OFFSITE and immutable >= NEEDED_IMMUTABLE and errors == 0)
    return Posture(
        copies=len(complete), regions=len(regions), offsite=offsite, immutable=immutable,
        errors=errors, met=met, stores=tuple(copies), notes=tuple(notes))
