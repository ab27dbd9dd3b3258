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
- a ``superseded`` key the agent has not moved off within :data:`SUPERSEDED_GRACE` is
  disabled anyway: a key replaced because it may be stolen must not live on because its
  agent is dead;
- a system that must hold nothing in a store (:func:`entitlement`: retired, its agent
  token revoked, its enrollment token expired or replaced before it enrolled, the store
  gone from its policy) has every key there disabled;
- a ``disabling`` key is disabled in the store when due (retried after failures).

Only keys whose ``next_attempt_at`` has come are acted on; the caller claims each before
the store is touched. Steps come disables first (:data:`STEP_ORDER`), so that a pass that
runs out of time has cut off what must be cut off before it makes anything new.
Rotations are spread over a tenth of the period (at most a week) by each key's id, so keys
made together (an upgrade, a new store) are not all replaced in one pass. Pure: no I/O,
no clock (``now`` is given).
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


STEP_ORDER = (StepKind.DISABLE, StepKind.CONFIRM, StepKind.SUPERSEDE, StepKind.ISSUE)
SUPERSEDED_GRACE = timedelta(days=7)
_SPREAD_MOST = timedelta(days=7)


class SystemStatus(enum.StrEnum):
    PENDING = "pending"
    ENROLLED = "enrolled"
    RETIRED = "retired"


def entitlement(status: str, *, in_policy: bool, agent_token: bool,
                enrollment_token: bool, has_keys: bool, issue_pending: bool
                ) -> tuple[bool, str] | None:
    """Whether a system may hold a key in a store: ``(True, "")``, ``(False, why not)``, or
    None when there is nothing to decide (no key, and none to make).

    - retired: never;
    - the store is not in its policy: not any more (when it holds keys there);
    - enrolled: while its agent holds a token that is neither revoked nor expired;
    - pending (token issued, not enrolled): only while an unused enrollment token is
      valid, and only keys the enrollment preview made (``issue_pending``) -- a leaked
      token whose time is up, or that a newer token replaced, leaves no working key.
    """
    if status == SystemStatus.RETIRED:
        return (False, "retired") if has_keys else None
    if not in_policy:
        return (False, "store left the policy") if has_keys else None
    if status == SystemStatus.ENROLLED:
        return (True, "") if agent_token else (False, "agent token revoked")
    if not enrollment_token:
        return (False, "enrollment token expired or replaced") if has_keys else None
    return (True, "") if issue_pending or has_keys else None


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
    superseded_at: datetime | None = None


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
    rotate_after = rotate_after if rotate_after and rotate_after > timedelta(0) else None
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
    return sorted(steps, key=lambda step: STEP_ORDER.index(step.kind))


def rotation_due(key: KeyFacts, rotate_after: timedelta) -> datetime | None:
    """When ``key`` is to be replaced: ``rotate_after`` after it was made, plus an offset
    drawn from its id within a tenth of the period (at most a week)."""
    if key.issued_at is None:
        return None
    spread = min(rotate_after / 10, _SPREAD_MOST)
    fraction = (key.id * 2654435761 % 1000) / 1000  # Knuth's multiplicative hash
    return key.issued_at + rotate_after + spread * fraction


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
    expired = [key for key in superseded
               if key.superseded_at is not None and key.superseded_at + SUPERSEDED_GRACE <= now]
    steps += [Step(StepKind.DISABLE, system, store, key.id,
                   f"the agent did not take its new key within {SUPERSEDED_GRACE.days} days")
              for key in expired]
    superseded = [key for key in superseded if key not in expired]
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
        elif (rotate_after and not superseded
              and (due := rotation_due(key, rotate_after)) is not None and due <= now):
            steps.append(Step(StepKind.SUPERSEDE, system, store, key.id,
                              f"older than {rotate_after.days} days"))
    return steps
