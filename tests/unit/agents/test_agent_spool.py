"""The spool: oldest first, each entry delivered once, nothing lost when the centre is away."""

from __future__ import annotations

import stat

import pytest

from agents.client import CentreRefused, CentreUnreachable
from agents.spool import MANIFEST, REPORT, Spool


def fill(spool: Spool, count: int) -> list[str]:
    ids = []
    for index in range(count):
        kind = REPORT if index % 2 == 0 else MANIFEST
        spool.add(kind, {"n": index})
        ids.append(index)
    return ids


def test_entries_come_back_oldest_first_and_private(tmp_path):
    spool = Spool(tmp_path / "spool")
    fill(spool, 12)  # more than 9, so that name order must not be string order of numbers
    entries = spool.entries()
    assert [entry.body["n"] for entry in entries] == list(range(12))
    assert [entry.kind for entry in entries[:2]] == [REPORT, MANIFEST]
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(entry.path.stat().st_mode) == 0o600 for entry in entries)
    assert spool.count() == 12


def test_delivery_sends_each_entry_once_in_order_and_empties_the_directory(tmp_path):
    spool = Spool(tmp_path / "spool")
    fill(spool, 5)
    sent = []
    result = spool.deliver(lambda entry: sent.append(entry.body["n"]), lambda error: False)
    assert sent == [0, 1, 2, 3, 4]
    assert (result.delivered, result.remaining, result.stopped_by) == (5, 0, None)
    assert list((tmp_path / "spool").iterdir()) == []
    again = spool.deliver(lambda entry: sent.append(entry.body["n"]), lambda error: False)
    assert again.delivered == 0 and sent == [0, 1, 2, 3, 4]


def test_an_unreachable_centre_stops_delivery_and_keeps_the_rest_in_order(tmp_path):
    spool = Spool(tmp_path / "spool")
    fill(spool, 4)
    sent = []

    def send(entry):
        if entry.body["n"] == 2:
            raise CentreUnreachable("cannot reach the centre")
        sent.append(entry.body["n"])

    result = spool.deliver(send, lambda error: False)
    assert sent == [0, 1]
    assert result.remaining == 2 and "cannot reach" in result.stopped_by
    assert [entry.body["n"] for entry in spool.entries()] == [2, 3]
    spool.add(REPORT, {"n": 4})
    later = []
    spool.deliver(lambda entry: later.append(entry.body["n"]), lambda error: False)
    assert later == [2, 3, 4]


def test_an_entry_refused_for_good_is_set_aside_with_its_reason(tmp_path):
    spool = Spool(tmp_path / "spool")
    fill(spool, 3)
    sent = []

    def send(entry):
        if entry.body["n"] == 1:
            raise CentreRefused("bad", status=422, detail="tree: not hex")
        sent.append(entry.body["n"])

    def permanent(error):
        return isinstance(error, CentreRefused) and not error.transient

    result = spool.deliver(send, permanent)
    assert sent == [0, 2] and (result.delivered, result.rejected, result.remaining) == (2, 1, 0)
    assert spool.rejected_count() == 1
    reason = next((tmp_path / "spool" / "rejected").glob("*.reason")).read_text()
    assert "bad" in reason


@pytest.mark.parametrize("status, transient", [(500, True), (503, True), (401, True),
                                                (429, True), (400, False), (404, False),
                                                (409, False), (422, False)])
def test_which_refusals_are_worth_retrying(status, transient):
    assert CentreRefused("x", status=status, detail="d").transient is transient
    assert CentreUnreachable("x").transient


def test_a_second_deliverer_waits_its_turn(tmp_path):
    spool = Spool(tmp_path / "spool")
    fill(spool, 2)
    inner = []

    def send(entry):
        # another process (here: a nested call) finds the spool being delivered
        inner.append(spool.deliver(lambda e: None, lambda error: False))

    result = spool.deliver(send, lambda error: False)
    assert result.delivered == 2
    assert inner[0].delivered == 0 and inner[0].stopped_by == "another delivery runs"


def test_a_damaged_entry_is_set_aside_not_delivered(tmp_path):
    spool = Spool(tmp_path / "spool")
    fill(spool, 2)
    first = spool.entries()[0].path
    first.write_text("{not json")
    assert [entry.body["n"] for entry in spool.entries()] == [1]
    assert spool.rejected_count() == 1


def test_unknown_kinds_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Spool(tmp_path / "spool").add("other", {})
