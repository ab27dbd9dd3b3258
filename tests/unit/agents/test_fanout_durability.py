"""The durability decision, the ledger and the run report (pure)."""

from __future__ import annotations

import pytest

from agents.fanout.budget import ByteBudget
from agents.fanout.durability import Decision, decide, is_durable
from agents.fanout.ledger import Ledger
from agents.fanout.report import build_report

DURABLE, FAILED, PENDING = Decision.DURABLE, Decision.FAILED, Decision.PENDING


@pytest.mark.parametrize(
    ("min_copies", "acknowledged", "failed", "stores", "expected"),
    [
        (2, 0, 0, 3, PENDING),
        (2, 1, 0, 3, PENDING),
        (2, 2, 0, 3, DURABLE),  # answered before the third store is done
        (2, 1, 1, 3, PENDING),  # the third store can still make it
        (2, 2, 1, 3, DURABLE),
        (2, 0, 2, 3, FAILED),  # one store left cannot make two copies
        (2, 1, 2, 3, FAILED),
        (3, 2, 0, 3, PENDING),
        (3, 2, 1, 3, FAILED),  # min_copies 3 and one store down: never durable
        (3, 3, 0, 3, DURABLE),
        (1, 1, 0, 3, DURABLE),
        (1, 0, 2, 3, PENDING),
        (1, 0, 3, 3, FAILED),
        (1, 0, 0, 1, PENDING),
        (1, 0, 1, 1, FAILED),
    ],
)
def test_decision(min_copies, acknowledged, failed, stores, expected):
    decision = decide(min_copies=min_copies, acknowledged=acknowledged, failed=failed,
                      stores=stores)
    assert decision is expected


@pytest.mark.parametrize(
    ("min_copies", "acknowledged", "failed", "stores"),
    [(0, 0, 0, 3), (4, 0, 0, 3), (2, -1, 0, 3), (2, 2, 2, 3), (2, 0, -1, 3)],
)
def test_decision_refuses_impossible_counts(min_copies, acknowledged, failed, stores):
    with pytest.raises(ValueError):
        decide(min_copies=min_copies, acknowledged=acknowledged, failed=failed, stores=stores)


def test_is_durable():
    assert is_durable(2, 2) and is_durable(3, 2) and not is_durable(1, 2)


def test_ledger_tracks_holders_in_store_order_and_forgets_deleted_locks():
    ledger = Ledger(["a", "b", "c"])
    assert ledger.holders("data/ab/x") is None
    ledger.acknowledged("c", "data/ab/x", 10)
    ledger.acknowledged("a", "data/ab/x", 10)
    ledger.missed("b", "data/ab/x", 10)
    assert ledger.holders("data/ab/x") == ("a", "c")
    assert ledger.size_of("data/ab/x") == 10
    assert ledger.written_under("data/") == [("data/ab/x", 10)]
    ledger.missed("b", "locks/l", 1)
    assert ledger.holders("locks/l") == ()
    assert ledger.size_of("locks/l") is None  # nobody holds it
    assert ledger.written_under("locks/") == []
    ledger.forget("locks/l")
    assert ledger.holders("locks/l") is None


def test_a_late_acknowledgement_clears_a_miss_but_a_miss_never_clears_one():
    ledger = Ledger(["a", "b"])
    ledger.missed("a", "k", 1)
    ledger.acknowledged("a", "k", 1)
    ledger.missed("a", "k", 1)  # a second, failed upload of the same object
    (record,) = ledger.snapshot().records
    assert record.acknowledged == {"a"} and record.missing == set()


def test_store_health():
    ledger = Ledger(["a", "b", "c"])
    assert ledger.healthy_stores() == ("a", "b", "c")
    assert ledger.mark_unhealthy("b", "store 'b': unreachable")
    assert not ledger.mark_unhealthy("b", "a later error")
    assert not ledger.is_healthy("b")
    assert ledger.healthy_stores() == ("a", "c")
    assert ledger.healthy_stores(["c", "b"]) == ("c",)
    assert ledger.snapshot().health["b"].error == "store 'b': unreachable"


def test_report_counts_objects_copies_and_missing_keys():
    ledger = Ledger(["a", "b", "c"])
    for key, size in (("config", 5), ("keys/k", 7), ("data/ab/ab1", 100)):
        ledger.acknowledged("a", key, size)
        ledger.acknowledged("b", key, size)
    ledger.acknowledged("c", "config", 5)
    ledger.missed("c", "data/ab/ab1", 100)
    ledger.mark_unhealthy("c", "store 'c': connection refused")
    report = build_report(ledger.store_names, ledger.snapshot(), min_copies=2)
    assert report.durable
    assert (report.objects, report.bytes) == (3, 112)
    assert list(report.stores) == ["a", "b", "c"]
    assert report.stores["a"].complete and report.stores["a"].written == 3
    c = report.stores["c"]
    assert not c.healthy and c.error == "store 'c': connection refused"
    # keys/k was neither acknowledged nor failed on c: still counted as missing there.
    assert c.missing == ("data/ab/ab1", "keys/k") and c.written == 1 and not c.complete
    assert report.as_dict() == {
        "a": {"complete": True, "missing_objects": 0, "missing": []},
        "b": {"complete": True, "missing_objects": 0, "missing": []},
        "c": {"complete": False, "missing_objects": 2, "missing": ["data/ab/ab1", "keys/k"]},
    }


def test_report_is_not_durable_when_an_object_has_too_few_copies():
    ledger = Ledger(["a", "b", "c"])
    ledger.acknowledged("a", "data/ab/ab1", 1)
    ledger.acknowledged("b", "data/ab/ab1", 1)
    ledger.acknowledged("a", "index/i", 1)
    report = build_report(ledger.store_names, ledger.snapshot(), min_copies=2)
    assert not report.durable and report.under_replicated == ("index/i",)
    assert build_report(ledger.store_names, ledger.snapshot(), min_copies=1).durable


def test_a_refused_upload_makes_the_run_not_durable_even_once_deleted():
    ledger = Ledger(["a", "b"])
    ledger.acknowledged("a", "locks/l", 1)
    ledger.missed("b", "locks/l", 1)
    ledger.refused("locks/l")
    ledger.forget("locks/l")  # restic removes the lock it could not make durable
    report = build_report(ledger.store_names, ledger.snapshot(), min_copies=2)
    assert not report.durable and report.refused == ("locks/l",) and report.objects == 0


def test_an_empty_run_is_durable():
    ledger = Ledger(["a"])
    report = build_report(ledger.store_names, ledger.snapshot(), min_copies=1)
    assert report.durable and report.objects == 0 and report.stores["a"].complete


def test_byte_budget_waits_and_lets_an_oversized_object_through_alone():
    budget = ByteBudget(10)
    first = budget.reserve(6)
    second = budget.reserve(4)
    assert budget.used == 10
    first.release()
    first.release()  # once only
    assert budget.used == 4
    second.release()
    oversized = budget.reserve(50)  # nothing else held: let through
    assert budget.used == 50 and budget.peak == 50
    oversized.release()
    with pytest.raises(ValueError):
        budget.reserve(-1)
    with pytest.raises(ValueError):
        ByteBudget(0)
