"""restore_drills.verdict: whether a drill passed, a pure function of its checks and targets."""

from __future__ import annotations

from datetime import timedelta

import pytest

from restore_drills.checks import CheckOutcome
from restore_drills.verdict import REQUIRED_CHECKS, Targets, decide, format_seconds, rto_of

OK = CheckOutcome(True, "fine")
TARGETS = Targets(rto=timedelta(hours=4), rpo=timedelta(hours=1))


def all_passed(**changes: CheckOutcome) -> dict[str, CheckOutcome]:
    checks = dict.fromkeys(REQUIRED_CHECKS, OK)
    checks["app:app-db"] = OK
    checks.update(changes)
    return checks


def test_every_check_passed_within_the_targets_passes():
    verdict = decide(all_passed(), 12.5, 3600.0, TARGETS)
    assert verdict.passed and verdict.reasons == ()
    assert list(verdict.checks) == [*REQUIRED_CHECKS, "app:app-db", "rto", "rpo"]
    assert verdict.checks["rto"].passed and "within" in verdict.checks["rto"].detail
    assert verdict.checks["rpo"].passed  # exactly at the target is within it


def test_every_failing_check_is_a_reason_in_order():
    checks = all_passed(manifest=CheckOutcome(False, "1 differs: /srv/a"),
                        **{"app:app-db": CheckOutcome(False, "exit 1 (expected 0)")})
    verdict = decide(checks, 1.0, 1.0, TARGETS)
    assert not verdict.passed
    assert verdict.reasons == ("manifest: 1 differs: /srv/a", "app:app-db: exit 1 (expected 0)")


@pytest.mark.parametrize("missing", REQUIRED_CHECKS)
def test_a_missing_required_check_fails_the_drill(missing):
    checks = all_passed()
    del checks[missing]
    verdict = decide(checks, 1.0, 1.0, TARGETS)
    assert not verdict.passed and verdict.reasons == (f"{missing}: did not run",)


def test_over_the_rto_fails_and_says_so():
    verdict = decide(all_passed(), 4 * 3600 + 1, 1.0, TARGETS)
    assert not verdict.passed and len(verdict.reasons) == 1
    assert verdict.reasons[0].startswith("rto: ") and "over the target 4h 0m" in \
        verdict.reasons[0]


def test_rpo_is_judged_only_when_asked():
    old = 30 * 3600.0
    judged = decide(all_passed(), 1.0, old, TARGETS)
    assert not judged.passed and judged.reasons[0].startswith("rpo: restore point 30h 0m old")
    reported = decide(all_passed(), 1.0, old,
                      Targets(TARGETS.rto, TARGETS.rpo, judge_rpo=False))
    assert reported.passed and "rpo" not in reported.checks


def test_stopped_early_is_the_reason_and_missing_checks_are_not_listed_again():
    checks = {"restic_verify": CheckOutcome(False, "listing failed: connection refused")}
    verdict = decide(checks, 0.2, 1.0, TARGETS, stopped_early="store dc-a could not be read")
    assert not verdict.passed
    assert verdict.reasons == ("restic_verify: listing failed: connection refused",)
    assert "rto" not in verdict.checks  # a restore that did not happen has no RTO to judge


def test_stopped_early_fails_even_with_nothing_failed():
    verdict = decide(all_passed(), 1.0, 1.0, TARGETS, stopped_early="sandbox: too small")
    assert not verdict.passed and verdict.reasons == ("sandbox: too small",)


def test_decide_does_not_change_its_input():
    checks = all_passed()
    before = dict(checks)
    decide(checks, 1.0, 1.0, TARGETS)
    assert checks == before


def test_rto_is_unseal_restore_and_verify_only():
    phases = {"unseal": 0.5, "list": 3.0, "restore": 9.0, "verify": 2.0, "manifest": 100.0,
              "control": 1.0, "checks": 50.0}
    assert rto_of(phases) == pytest.approx(11.5)
    assert rto_of({"restore": 2.0}) == 2.0
    assert rto_of({}) == 0.0


@pytest.mark.parametrize("seconds, text", [
    (0, "0.0 s"), (42.14, "42.1 s"), (60, "1m 0s"), (723, "12m 3s"), (3600, "1h 0m"),
    (3 * 3600 + 125, "3h 2m"), (47 * 3600, "47h 0m"), (52 * 3600, "2d 4h"),
])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text
