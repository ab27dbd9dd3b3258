"""The key plan (drd.credentials.plan): what to make, rotate, confirm and disable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from drd.credentials.plan import (
    SUPERSEDED_GRACE,
    KeyFacts,
    KeyState,
    Need,
    Step,
    StepKind,
    entitlement,
    plan_keys,
    rotation_due,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def key(id: int, state: KeyState, *, system: int = 1, store: int = 10, access: str | None = None,
        issued: datetime | None = None, confirmed: datetime | None = None,
        due: datetime | None = None, secret: bool = True,
        superseded: datetime | None = None) -> KeyFacts:
    return KeyFacts(id=id, system_id=system, store_id=store, state=state,
                    access_key_id=access if access is not None else f"AK{id}",
                    issued_at=issued if issued is not None else NOW - DAY,
                    confirmed_at=confirmed, next_attempt_at=due, has_secret=secret,
                    superseded_at=superseded)


def kinds(steps: list[Step]) -> list[tuple[StepKind, int | None]]:
    return [(step.kind, step.key_id) for step in steps]


def test_a_system_without_a_key_gets_one():
    assert kinds(plan_keys([Need(1, 10, True)], [], NOW)) == [(StepKind.ISSUE, None)]


def test_an_active_key_in_use_is_confirmed_once():
    need = Need(1, 10, True, in_use="AK1")
    assert kinds(plan_keys([need], [key(1, KeyState.ACTIVE)], NOW)) == [(StepKind.CONFIRM, 1)]
    confirmed = key(1, KeyState.ACTIVE, confirmed=NOW)
    assert plan_keys([need], [confirmed], NOW) == []


def test_a_pending_key_is_issued_again_only_when_due():
    pending = key(1, KeyState.PENDING, access="", due=NOW + timedelta(seconds=30))
    assert plan_keys([Need(1, 10, True)], [pending], NOW) == []
    later = NOW + timedelta(minutes=1)
    assert kinds(plan_keys([Need(1, 10, True)], [pending], later)) == [(StepKind.ISSUE, 1)]


def test_rotation_supersedes_an_old_key_even_while_the_agent_uses_it():
    # due 90 days after it was made, plus up to a tenth of that drawn from its id
    old = key(1, KeyState.ACTIVE, issued=NOW - 99 * DAY, confirmed=NOW - 90 * DAY)
    need = Need(1, 10, True, in_use="AK1")
    assert kinds(plan_keys([need], [old], NOW, rotate_after=90 * DAY)) == [
        (StepKind.SUPERSEDE, 1)]
    assert plan_keys([need], [old], NOW, rotate_after=None) == []
    assert plan_keys([need], [old], NOW, rotate_after=timedelta(0)) == []
    young = key(1, KeyState.ACTIVE, issued=NOW - 89 * DAY, confirmed=NOW)
    assert plan_keys([need], [young], NOW, rotate_after=90 * DAY) == []


def test_the_superseded_key_is_disabled_only_once_the_agent_uses_the_new_one():
    old = key(1, KeyState.SUPERSEDED)
    new = key(2, KeyState.ACTIVE)
    still_old = Need(1, 10, True, in_use="AK1")
    assert plan_keys([still_old], [old, new], NOW) == []
    silent = Need(1, 10, True, in_use=None)
    assert plan_keys([silent], [old, new], NOW) == []
    moved = Need(1, 10, True, in_use="AK2")
    assert kinds(plan_keys([moved], [old, new], NOW)) == [(StepKind.DISABLE, 1),
                                                          (StepKind.CONFIRM, 2)]


def test_no_second_rotation_while_one_waits_for_the_agent():
    old = key(1, KeyState.SUPERSEDED, issued=NOW - 200 * DAY)
    new = key(2, KeyState.ACTIVE, issued=NOW - 100 * DAY)
    assert plan_keys([Need(1, 10, True, in_use="AK1")], [old, new], NOW,
                     rotate_after=90 * DAY) == []


def test_a_system_cut_off_has_every_key_disabled():
    keys = [key(1, KeyState.ACTIVE), key(2, KeyState.SUPERSEDED), key(3, KeyState.PENDING),
            key(4, KeyState.DISABLED)]
    steps = plan_keys([Need(1, 10, False, "retired")], keys, NOW)
    assert kinds(steps) == [(StepKind.DISABLE, 1), (StepKind.DISABLE, 2), (StepKind.DISABLE, 3)]
    assert {step.reason for step in steps} == {"retired"}


def test_disabling_keys_are_carried_out_when_due_even_without_a_need():
    due = key(1, KeyState.DISABLING, system=7, due=NOW - timedelta(seconds=1))
    waiting = key(2, KeyState.DISABLING, system=8, due=NOW + timedelta(minutes=5))
    assert kinds(plan_keys([], [due, waiting], NOW)) == [(StepKind.DISABLE, 1)]


def test_a_key_whose_secret_was_lost_is_replaced():
    recovered = key(1, KeyState.ACTIVE, secret=False)
    steps = plan_keys([Need(1, 10, True, in_use="AK1")], [recovered], NOW)
    assert (StepKind.SUPERSEDE, 1) in kinds(steps)


def test_keys_of_other_systems_and_stores_are_planned_apart():
    keys = [key(1, KeyState.ACTIVE, system=1, store=10),
            key(2, KeyState.ACTIVE, system=1, store=11),
            key(3, KeyState.ACTIVE, system=2, store=10)]
    needs = [Need(1, 10, True), Need(1, 11, False, "store left the policy"), Need(2, 10, True),
             Need(3, 10, True)]
    assert kinds(plan_keys(needs, keys, NOW)) == [(StepKind.DISABLE, 2), (StepKind.ISSUE, None)]


STATES = st.sampled_from(list(KeyState))


@given(st.lists(st.tuples(STATES, st.integers(1, 2), st.integers(10, 11), st.booleans()),
                max_size=8),
       st.lists(st.tuples(st.integers(1, 2), st.integers(10, 11), st.booleans(),
                          st.sampled_from([None, "AK0", "AK1", "AK2", "AK3"])), max_size=4,
                unique_by=lambda need: need[:2]))
def test_never_more_than_one_new_key_per_pair_and_never_a_wanted_live_key_disabled(rows, needs):
    keys = [key(index, state, system=system, store=store, secret=secret)
            for index, (state, system, store, secret) in enumerate(rows)]
    wanted = [Need(system, store, want, "" if want else "retired", in_use)
              for system, store, want, in_use in needs]
    steps = plan_keys(wanted, keys, NOW, rotate_after=30 * DAY)
    issues = [(step.system_id, step.store_id) for step in steps
              if step.kind == StepKind.ISSUE and step.key_id is None]
    assert len(issues) == len(set(issues))
    by_id = {k.id: k for k in keys}
    wants = {(n.system_id, n.store_id): n.wanted for n in wanted}
    for step in steps:
        if step.kind == StepKind.DISABLE:
            target = by_id[step.key_id]
            if target.state == KeyState.ACTIVE:
                assert not wants.get((target.system_id, target.store_id), False)
        if step.kind == StepKind.ISSUE and step.key_id is None:
            live = [k for k in keys if (k.system_id, k.store_id) == (step.system_id, step.store_id)
                    and k.state in (KeyState.PENDING, KeyState.ACTIVE)]
            assert not live
        if step.kind == StepKind.DISABLE and by_id[step.key_id].state == KeyState.SUPERSEDED \
                and wants.get((step.system_id, step.store_id)):
            # a replaced key goes only once the agent names the live one (no grace here)
            (need,) = [n for n in wanted if (n.system_id, n.store_id)
                       == (step.system_id, step.store_id)]
            assert any(k.state == KeyState.ACTIVE and k.access_key_id == need.in_use
                       and (k.system_id, k.store_id) == (step.system_id, step.store_id)
                       for k in keys)
    disabled = {step.key_id for step in steps if step.kind == StepKind.DISABLE}
    for k in keys:  # no longer entitled: every key that works there goes
        if wants.get((k.system_id, k.store_id)) is False and k.state in (
                KeyState.PENDING, KeyState.ACTIVE, KeyState.SUPERSEDED):
            assert k.id in disabled


def test_a_superseded_key_the_agent_never_leaves_is_disabled_after_the_grace():
    waiting = key(1, KeyState.SUPERSEDED, superseded=NOW - SUPERSEDED_GRACE + DAY)
    new = key(2, KeyState.ACTIVE)
    assert plan_keys([Need(1, 10, True, in_use="AK1")], [waiting, new], NOW) == []
    stale = key(1, KeyState.SUPERSEDED, superseded=NOW - SUPERSEDED_GRACE)
    (step,) = plan_keys([Need(1, 10, True, in_use="AK1")], [stale, new], NOW)
    assert (step.kind, step.key_id) == (StepKind.DISABLE, 1) and "7 days" in step.reason


def test_disables_come_first_whatever_the_order_of_systems():
    keys = [key(1, KeyState.ACTIVE, system=1), key(2, KeyState.ACTIVE, system=2)]
    needs = [Need(1, 10, True), Need(2, 10, False, "retired"), Need(3, 10, True)]
    assert [step.kind for step in plan_keys(needs, keys, NOW)] == [StepKind.DISABLE,
                                                                   StepKind.ISSUE]


@given(st.integers(1, 10**9), st.integers(1, 3650))
def test_rotations_are_spread_within_a_tenth_of_the_period(key_id, days):
    period = days * DAY
    made = key(key_id, KeyState.ACTIVE, issued=NOW)
    due = rotation_due(made, period)
    assert NOW + period <= due <= NOW + period + min(period / 10, 7 * DAY)


ENTITLED = [
    # status, in policy, agent token, enrollment token, has keys, preview -> decision
    ("retired", True, True, True, True, False, (False, "retired")),
    ("retired", True, True, True, False, False, None),
    ("enrolled", False, True, False, True, False, (False, "store left the policy")),
    ("enrolled", False, True, False, False, False, None),
    ("enrolled", True, True, False, False, False, (True, "")),
    ("enrolled", True, False, False, True, False, (False, "agent token revoked")),
    ("pending", True, False, True, False, True, (True, "")),
    ("pending", True, False, True, True, False, (True, "")),
    ("pending", True, False, True, False, False, None),
    ("pending", True, False, False, True, False,
     (False, "enrollment token expired or replaced")),
    ("pending", True, False, False, False, True, None),
]


def test_who_may_hold_keys():
    for status, policy, agent, enrollment, has, preview, decision in ENTITLED:
        assert entitlement(status, in_policy=policy, agent_token=agent,
                           enrollment_token=enrollment, has_keys=has,
                           issue_pending=preview) == decision, (status, policy, agent,
                                                                enrollment, has, preview)
