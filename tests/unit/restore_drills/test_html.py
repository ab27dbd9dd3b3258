"""The HTML report: self-contained, escaped, verdict first, every check in order."""

from __future__ import annotations

import re

from restore_drills.html import AFFECTED_FILES_SHOWN, render_html
from tests.unit.restore_drills.sample import HISTORY, report

HOSTILE = "<script>alert(1)</script>"


def test_the_page_fetches_nothing_and_runs_nothing() -> None:
    page = render_html(report(), HISTORY)
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert "@import" not in page and not re.search(r"url\(", page)
    assert "<link" not in page.lower() and "<img" not in page.lower()
    assert page.count("<svg") == 2


def test_the_verdict_comes_first_then_reasons_then_checks_in_report_order() -> None:
    page = render_html(report(), HISTORY)
    page = page[page.index("<body>"):]
    order = [page.index(marker) for marker in (
        'class="verdict failed"', ">FAILED<", "fs1", "region-b", "abab" * 16,
        'id="reasons"', "1 file differs", 'id="checks"')]
    assert order == sorted(order)
    names = re.findall(r"<td><code>([^<]+)</code></td>", page)
    assert names == [name.replace("&", "&amp;") for name in report()["checks"]]
    assert page.index('id="checks"') < page.index('id="targets"') < page.index(
        'id="phases"') < page.index('id="posture"') < page.index('id="history"')


def test_a_passed_drill_shows_passed_and_no_reasons() -> None:
    page = render_html(report(passed=True, reasons=[]), [])
    assert 'class="verdict passed"' in page and 'id="reasons"' not in page
    assert "no drills yet" in page


def test_user_text_is_escaped_everywhere() -> None:
    hostile = report(system=HOSTILE, store=HOSTILE, reasons=[HOSTILE],
                     affected_files=[HOSTILE],
                     checks={f"app:{HOSTILE}": {"passed": False, "detail": HOSTILE}})
    page = render_html(hostile, [{**HISTORY[0], "store": HOSTILE}])
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_affected_files_are_capped_with_the_count() -> None:
    files = [f"/srv/share/{index:04}" for index in range(250)]
    page = render_html(report(affected_files=files), [])
    assert "250 files affected" in page
    assert f"/srv/share/{AFFECTED_FILES_SHOWN - 1:04}" in page
    assert f"/srv/share/{AFFECTED_FILES_SHOWN:04}" not in page


def test_targets_posture_and_footer() -> None:
    page = render_html(report(rto_seconds=20000.0), HISTORY)
    assert "OVER TARGET" in page and "within target" in page  # RTO over, RPO within
    assert "NOT MET" in page and "3 copies, 2 regions, 1 off-site, 1 immutable" in page
    assert "Report schema 1" in page and "restic 0.14.0" in page
    assert "drd drill verify-report FILE" in page
    assert "2026-11-27 19:00:00 UTC" in page
