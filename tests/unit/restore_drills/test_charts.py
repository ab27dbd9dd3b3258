"""The history charts: well-formed SVG, escaped names, deterministic, any history length."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from restore_drills.charts import (
    FAILED_COLOUR,
    PASSED_COLOUR,
    RUNNING_COLOUR,
    human_duration,
    pass_fail_chart,
    rto_chart,
)
from tests.unit.restore_drills.sample import HISTORY

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert("x")</script>&'


def _parse(svg: str) -> ElementTree.Element:
    root = ElementTree.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


@pytest.mark.parametrize("count", [0, 1, 3])
def test_both_charts_are_well_formed_for_any_history_length(count: int) -> None:
    history = HISTORY[:count]
    for svg in (rto_chart(history, 14400.0), pass_fail_chart(history), rto_chart(history, None)):
        _parse(svg)
        assert "<script" not in svg and "href" not in svg


def test_rto_chart_marks_failed_drills_red_and_draws_the_target_dashed() -> None:
    root = _parse(rto_chart(HISTORY, 20.0))
    circles = root.findall(f"{SVG}circle")
    assert [c.get("fill") for c in circles] == [PASSED_COLOUR, FAILED_COLOUR]
    (target,) = [line for line in root.findall(f"{SVG}line") if line.get("stroke-dasharray")]
    assert "20 s" in target.findtext(f"{SVG}title")
    assert root.find(f"{SVG}path").get("stroke") == RUNNING_COLOUR  # no RTO: a cross


def test_a_target_far_above_every_drill_is_named_not_drawn() -> None:
    svg = rto_chart(HISTORY, 14400.0)
    assert "stroke-dasharray" not in svg and "RTO target 4h" in svg


def test_pass_fail_chart_has_one_row_per_store_and_one_cell_per_drill() -> None:
    history = [*HISTORY, {**HISTORY[0], "id": 13, "passed": False}]
    root = _parse(pass_fail_chart(history))
    cells = root.findall(f"{SVG}rect")
    assert [c.get("fill") for c in cells] == [PASSED_COLOUR, FAILED_COLOUR, RUNNING_COLOUR,
                                              FAILED_COLOUR]
    assert "drill #13 on dc-a" in cells[1].findtext(f"{SVG}title")
    assert [t.findtext(f"{SVG}title") for t in root.findall(f"{SVG}text")] == [
        "dc-a", "dc-b", "region-b"]


def test_hostile_store_names_are_escaped() -> None:
    history = [{**HISTORY[0], "store": HOSTILE}]
    for svg in (rto_chart(history, 60.0), pass_fail_chart(history)):
        assert "<script" not in svg
        assert HOSTILE in ElementTree.tostring(_parse(svg), encoding="unicode",
                                               method="text")


def test_charts_are_deterministic() -> None:
    assert rto_chart(HISTORY, 20.0) == rto_chart(list(HISTORY), 20.0)
    assert pass_fail_chart(HISTORY) == pass_fail_chart(list(HISTORY))


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (12.5, "12.5 s"), (3, "3 s"), (200, "3m 20s"), (14400, "4h"),
    (183600, "2d 3h")])
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text
