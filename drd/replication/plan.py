"""Which objects to copy where, so that every store holds a system's whole repository.

:func:`plan_replication` is pure: given each store's listing (or None for a store that
could not be listed), what the ledger knows to be corrupt, the tombstoned keys and the
policy's order of stores, it returns a :class:`ReplicationPlan`: the copies that make
every listed store hold every tracked object (:func:`drd.ledger.is_tracked`; never
``locks/``, never a tombstoned key), what each store lacks, and the keys whose copies
disagree in size.

Rules:

- The *right* size of a key named by its hash is the size most stores that hold it agree
  on, counting only copies not known to be corrupt (a tie goes to the copy first in the
  policy's order). Restic names objects by the SHA-256 of their bytes, so two sizes under
  one name mean one of them is corrupt: the minority copy is reported
  (:class:`SizeConflict`) and replaced. The vote only picks the copy tried first: every
  copy is checked against its name on the way (:mod:`drd.replication.run`).
- A key not named by its hash (``config``, the sealed password, a manifest) has the size
  the catalog recorded (``records``, :mod:`drd.recorded`), whatever the copies say: a
  copy of another size is damaged and replaced, and its copies are checked against the
  recorded SHA-256 on the way. Without a record such a key is never copied (no copy can
  be told right from a forgery); it stays in ``unrecorded``, and only ``config`` counts
  as lacking where a store does not hold it (restic cannot open a store without it;
  drd's own objects are not restic's to need).
- A store *lacks* a key when it does not hold it, holds it at another size, or holds a
  copy the ledger knows to be corrupt.
- The source of a copy holds the key at the right size and is not known corrupt for it.
  A store in the same *copy group* as the target (the same S3 endpoint and keys, where a
  server-side copy is possible) is preferred, and that includes a store this plan copies
  the key to earlier (its copy will be there by then); otherwise the first in the policy's
  order. The other good holders are kept as alternatives, for when the source fails.
- The copies of one key come together, in the policy's order of targets: applied in
  order (those of different keys in any order), they leave every listed store holding
  the whole union.
- Keys come in restic's order of writing (:func:`phase`): packs, then indexes, keys and
  ``config``, and snapshots last, so that a store caught up only part of the way never
  holds a snapshot whose data it lacks, if the copier keeps to that order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from drd.ledger import CONFIG, expected_sha256, is_tracked


@dataclass(frozen=True)
class PlannedCopy:
    """Copy ``key`` (``size`` bytes) from store ``source`` to store ``target``.

    ``alternatives`` are other stores holding a good copy, in order of preference, for
    when ``source`` fails; ``server_side`` says source and target are in one copy group;
    ``replaces`` that the target holds a copy that is wrong (another size, or corrupt).
    """

    key: str
    size: int
    source: str
    target: str
    alternatives: tuple[str, ...] = ()
    server_side: bool = False
    replaces: bool = False


@dataclass(frozen=True)
class SizeConflict:
    """Stores hold ``key`` at different sizes; ``size`` is the right one (the majority),
    ``corrupt`` the stores whose copy has another size."""

    key: str
    sizes: Mapping[str, int]
    size: int
    corrupt: tuple[str, ...]


@dataclass(frozen=True)
class StoreLag:
    """What one store lacks of the union: a count of objects and their bytes."""

    objects: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class ReplicationPlan:
    """The outcome of :func:`plan_replication`.

    ``union`` maps every key some listed store holds (tracked, not tombstoned, recorded
    where it is not named by its hash) to its right size; ``lag`` maps each listed target
    store to what it lacks of that union (copies planned or not), and of ``config`` when
    unrecorded; ``unsourced`` are keys no store holds a good copy of (nothing can be
    copied; verification marks them lost); ``unrecorded`` the keys not named by their hash
    that the catalog holds no record of, with the stores that hold them (never copied);
    ``down`` are the stores not listed.
    """

    copies: tuple[PlannedCopy, ...]
    union: Mapping[str, int]
    lag: Mapping[str, StoreLag]
    conflicts: tuple[SizeConflict, ...] = ()
    unsourced: Mapping[str, int] = field(default_factory=dict)
    unrecorded: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    down: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(copy.size for copy in self.copies)

    def copies_to(self, store: str) -> list[PlannedCopy]:
        return [copy for copy in self.copies if copy.target == store]


PHASES = {"data": 0, "index": 1, "keys": 2, "config": 3, "snapshots": 4}
SNAPSHOTS_PHASE = PHASES["snapshots"]


def phase(key: str) -> int:
    """The rank of ``key``'s kind in restic's order of writing (data first, snapshots
    last)."""
    return PHASES.get(key.split("/", 1)[0], SNAPSHOTS_PHASE)


def _ordered(stores: Iterable[str], order: Sequence[str]) -> list[str]:
    """``stores`` in the policy's ``order``; stores it does not name last, by name."""
    rank = {name: index for index, name in enumerate(order)}
    return sorted(stores, key=lambda name: (rank.get(name, len(rank)), name))


def _right_size(holders: Mapping[str, int], good: Collection[str],
                order: Sequence[str]) -> int:
    """The size most good holders agree on (all holders when none is good); a tie goes to
    the size of the holder first in ``order``."""
    voters = [name for name in _ordered(holders, order) if name in good] or \
        _ordered(holders, order)
    counts = Counter(holders[name] for name in voters)
    first = {}
    for index, name in enumerate(voters):
        first.setdefault(holders[name], index)
    return min(counts, key=lambda size: (-counts[size], first[size]))


def plan_replication(
    listings: Mapping[str, Mapping[str, int] | None],
    *,
    order: Sequence[str] = (),
    corrupt: Mapping[str, Collection[str]] | None = None,
    tombstoned: Collection[str] = (),
    copy_groups: Mapping[str, str | None] | None = None,
    targets: Collection[str] | None = None,
    records: Mapping[str, int] | None = None,
) -> ReplicationPlan:
    """Plan the copies that make every listed store hold every tracked object (pure).

    Args:
        listings: per store name, its listing ``{key: size}``, or None if it is down.
        order: the policy's order of stores (preferred sources first).
        corrupt: per store, the keys the ledger knows to be corrupt there.
        tombstoned: keys pruned by retention: never copied, never counted.
        copy_groups: per store, a label shared by stores that can copy server-side
            between each other (None: none).
        targets: the stores to bring up to date (None: every listed store); the others
            serve as sources only.
        records: per key not named by its hash, the size the catalog recorded for it;
            such a key without a record is never copied.

    Returns:
        the :class:`ReplicationPlan` (see the module docstring for the rules).
    """
    corrupt = corrupt or {}
    copy_groups = copy_groups or {}
    records = records or {}
    tombstoned = set(tombstoned)
    stores = _ordered(listings, order)
    up = [name for name in stores if listings[name] is not None]
    down = tuple(name for name in stores if listings[name] is None)
    receiving = [name for name in up if targets is None or name in targets]
    holders_of: dict[str, dict[str, int]] = {}
    for name in up:
        for key, size in listings[name].items():
            if key in tombstoned or not is_tracked(key):
                continue
            holders_of.setdefault(key, {})[name] = size

    copies: list[PlannedCopy] = []
    conflicts: list[SizeConflict] = []
    union: dict[str, int] = {}
    unsourced: dict[str, int] = {}
    unrecorded: dict[str, tuple[str, ...]] = {}
    lag_objects = dict.fromkeys(receiving, 0)
    lag_bytes = dict.fromkeys(receiving, 0)
    for key in sorted(holders_of, key=lambda key: (phase(key), key)):
        holders = holders_of[key]
        good = {name for name in holders if key not in corrupt.get(name, ())}
        if expected_sha256(key) is not None:
            size = _right_size(holders, good, stores)
        elif key in records:
            size = records[key]
        else:
            unrecorded[key] = tuple(_ordered(holders, stores))
            if key == CONFIG:
                for target in receiving:
                    if target not in holders:
                        lag_objects[target] += 1
            continue
        union[key] = size
        if any(held != size for held in holders.values()):
            conflicts.append(SizeConflict(
                key=key, sizes=dict(holders), size=size,
                corrupt=tuple(name for name in _ordered(holders, stores)
                              if holders[name] != size)))
        sources = [name for name in stores if name in good and holders[name] == size]
        if not sources:
            unsourced[key] = size
        staged: list[str] = []  # targets planned earlier for this key, holding it by then
        for target in receiving:
            if target in sources:
                continue
            lag_objects[target] += 1
            lag_bytes[target] += size
            if not sources:
                continue
            group = copy_groups.get(target)
            near = [name for name in [*sources, *staged]
                    if group is not None and copy_groups.get(name) == group]
            source = near[0] if near else sources[0]
            copies.append(PlannedCopy(
                key=key, size=size, source=source, target=target,
                alternatives=tuple(name for name in sources if name != source),
                server_side=bool(near), replaces=target in holders))
            staged.append(target)
    return ReplicationPlan(
        copies=tuple(copies), union=union,
        lag={name: StoreLag(lag_objects[name], lag_bytes[name]) for name in receiving},
        conflicts=tuple(conflicts), unsourced=unsourced, unrecorded=unrecorded, down=down)
