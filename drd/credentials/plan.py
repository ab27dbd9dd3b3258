"""What to do about systems' own store keys: a pure decision over catalog facts.

For every system and store, :func:`plan_keys` compares what the system should hold (a
:class:`Need`) with the keys the catalog knows (:class:`KeyFacts`) and returns the
:class:`Step` s that bring the two together:

- a system that should hold a key and has none live (``pending`` or ``active``) gets one
  (``issue``); a ``pending`` key, made before but not finished, is issued again when due;
- an ``active`` key older than the rotation period is ``supersede``\\ d (it keeps working),
  and a new one issued, unless an earlier rotation still waits for the agent;
- a ``superseded`` key is disabled once the agent says it uses the newer key (its
  heartbeat names the key id it holds per store), never before: an agent that has not
  picked up its new key must not be locked out of its own backups by a rotation;
- an ``active`` key the agent uses is ``confirm`` ed (recorded, for status);
- an ``active`` key whose secret the catalog no longer holds (a centre rebuilt by ``drd
  recover-catalog``: catalog copies never carry secrets) is superseded at once, so the
  agent gets a new key it can be handed, and the old one is disabled once it uses it;
- a system that must hold nothing in a store (retired, its agent token revoked, the
  store gone from its policy) has every key there disabled;
- a ``disabling`` key is disabled in the store when due (retried after failures).

Only keys whose ``next_attempt_at`` has come are acted on; the caller claims each before
the store is touched. Pure: no I/O, no clock (``now`` is given).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


class KeyState(enum.StrEnum):
    """A key's state in ``store_credentials.state`` (see the catalog model)."""

    PENDING = "pending"
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    DISABLING = "disabling"
    DISABLED = "disabled"


LIVE = (KeyState.PENDING, KeyState.ACTIVE)


class StepKind(enum.StrEnum):
    ISSUE = "issue"
    SUPERSEDE = "supersede"
    DISABLE = "disable"
    CONFIRM = "confirm"


@dataclass(frozen=True)
class KeyFacts:
    """One row of ``store_credentials``, as the plan needs it."""

    id: int
    system_id: int
    store_id: int
    state: KeyState
    access_key_id: str | None = None
    issued_at: datetime | None = None
    confirmed_at: datetime | None = None
    next_attempt_at: datetime | None = None
    has_secret: bool = True


@dataclass(frozen=True)
class Need:
    """What one system should hold in one store.

    ``wanted``: it may hold a key there (else ``reason`` says why not: ``retired``,
    ``agent token revoked``, ``store left the policy``). ``in_use``: the key id its agent
    said it uses for this store (None: not said).
    """

    system_id: int
    store_id: int
    wanted: bool
    reason: str = ""
    in_use: str | None = None


@dataclass(frozen=True)
class Step:
    """One thing to do. ``key_id`` is the row acted on (None for a new key to issue)."""

    kind: StepKind
    system_id: int
    store_id: int
    key_id: int | None = None
    reason: str = ""


def _due(key: KeyFacts, now: datetime) -> bool:
    return key.next_attempt_at is None or key.next_attempt_at <= now


def plan_keys(needs: Iterable[Need], keys: Iterable[KeyFacts], now: datetime,
              rotate_after: timedelta | None = None) -> list[Step]:
    """The steps that bring ``keys`` in line with ``needs`` (see the module docstring).

    Keys of a system and store that no need mentions are left alone, except ``disabling``
    ones, which are always carried out. ``rotate_after`` None or zero: no rotation.
    """
    by_pair: dict[tuple[int, int], list[KeyFacts]] = defaultdict(list)
    for key in keys:
        by_pair[key.system_id, key.store_id].append(key)
    steps: list[Step] = []
    seen: set[tuple[int, int]] = set()
    for need in needs:
        pair = (need.system_id, need.store_id)
        seen.add(pair)
        steps += _plan_pair(need, by_pair.get(pair, []), now, rotate_after)
    for pair, pair_keys in by_pair.items():
        if pair not in seen:
            steps += [Step(StepKind.DISABLE, key.system_id, key.store_id, key.id, "")
                      for key in pair_keys if key.state == KeyState.DISABLING and _due(key, now)]
    return steps


def _plan_pair(need: Need, keys: list[KeyFacts], now: datetime,
               rotate_after: timedelta | None) -> list[Step]:
    system, store = need.system_id, need.store_id
    steps = [Step(StepKind.DISABLE, system, store, key.id, "")
             for key in keys if key.state == KeyState.DISABLING and _due(key, now)]
    if not need.wanted:
        return steps + [Step(StepKind.DISABLE, system, store, key.id, need.reason)
                        for key in keys
                        if key.state in (*LIVE, KeyState.SUPERSEDED)]
    live = [key for key in keys if key.state in LIVE]
    superseded = [key for key in keys if key.state == KeyState.SUPERSEDED]
    if not live:
        return steps + [Step(StepKind.ISSUE, system, store)]
    for key in live:
        if key.state == KeyState.PENDING:
            if _due(key, now):
                steps.append(Step(StepKind.ISSUE, system, store, key.id))
            continue
        if need.in_use is not None and need.in_use == key.access_key_id:
            if key.confirmed_at is None:
                steps.append(Step(StepKind.CONFIRM, system, store, key.id))
            steps += [Step(StepKind.DISABLE, system, store, old.id,
                           "replaced: the agent uses its new key")
                      for old in superseded]
        if not key.has_secret and not superseded:
            steps.append(Step(StepKind.SUPERSEDE, system, store, key.id,
                              "the centre no longer holds its secret (recovered catalog)"))
        elif (rotate_after and not superseded and key.issued_at is not None
              and key.issued_at + rotate_after <= now):
            steps.append(Step(StepKind.SUPERSEDE, system, store, key.id,
                              f"older than {rotate_after.days} days"))
    return steps
