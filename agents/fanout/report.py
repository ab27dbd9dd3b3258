"""What a fan-out run achieved, per store: built from the ledger by a pure function."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agents.fanout.durability import is_durable
from agents.fanout.ledger import LedgerSnapshot


@dataclass(frozen=True)
class StoreOutcome:
    """One store's part in a run.

    ``written``: objects of the run it holds; ``missing``: store keys of the run's objects
    it does not hold (it failed them after retries, or was skipped once unhealthy), sorted;
    ``healthy``: it was never given up on; ``error``: why it was given up on, if it was.
    """

    name: str
    healthy: bool
    written: int
    missing: tuple[str, ...]
    error: str | None = None

    @property
    def complete(self) -> bool:
        """True when the store holds every object of the run."""
        return not self.missing


@dataclass(frozen=True)
class FanoutReport:
    """The outcome of a run through a :class:`~agents.fanout.FanoutEndpoint`.

    ``durable``: every object written during the run is held by at least ``min_copies``
    stores; ``objects``/``bytes``: the objects written during the run (restic's lock files
    that it deleted again are left out), and their total size; ``stores``: each store's
    :class:`StoreOutcome`, in the policy's order; ``under_replicated``: keys held by
    fewer than ``min_copies`` stores; ``refused``: keys whose upload restic was told had
    failed (too few stores stored it) -- such a run is never durable, even when restic
    removed the object again (a lock file).
    """

    durable: bool
    objects: int
    bytes: int
    stores: Mapping[str, StoreOutcome]
    min_copies: int = 1
    under_replicated: tuple[str, ...] = field(default=())
    refused: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, dict]:
        """The ``stores`` member of a snapshot report (docs/agent-protocol.md):
        ``{name: {"complete": bool, "missing_objects": int, "missing": [key, ...]}}``."""
        return {
            name: {
                "complete": outcome.complete,
                "missing_objects": len(outcome.missing),
                "missing": list(outcome.missing),
            }
            for name, outcome in self.stores.items()
        }


def build_report(
    store_names: Sequence[str], snapshot: LedgerSnapshot, *, min_copies: int
) -> FanoutReport:
    """The report of a run whose ledger is ``snapshot`` (pure).

    A store that neither acknowledged nor gave up on an object (none should be left once
    the writes are drained) counts as missing it: the report never claims a copy that
    was not acknowledged.
    """
    missing: dict[str, list[str]] = {name: [] for name in store_names}
    written = dict.fromkeys(store_names, 0)
    under_replicated = []
    total_bytes = 0
    for record in snapshot.records:
        total_bytes += record.size
        copies = 0
        for name in store_names:
            if name in record.acknowledged:
                written[name] += 1
                copies += 1
            else:
                missing[name].append(record.key)
        if not is_durable(copies, min_copies):
            under_replicated.append(record.key)
    stores = {
        name: StoreOutcome(
            name=name,
            healthy=snapshot.health[name].healthy,
            written=written[name],
            missing=tuple(sorted(missing[name])),
            error=snapshot.health[name].error,
        )
        for name in store_names
    }
    return FanoutReport(
        durable=not under_replicated and not snapshot.refused,
        objects=len(snapshot.records),
        bytes=total_bytes,
        stores=stores,
        min_copies=min_copies,
        under_replicated=tuple(sorted(under_replicated)),
        refused=tuple(sorted(snapshot.refused)),
    )
