"""The alert rules and their reconciliation with the open alerts (pure)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from drd.alerting import rules
from drd.alerting.rules import (
    DrillFacts,
    ExpectedAlert,
    Facts,
    LockFacts,
    OpenAlert,
    ReplicaFacts,
    RuleSettings,
    StoreFacts,
    SystemFacts,
)
from drd.services.alerts import KINDS, open_key

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def system(**changes) -> SystemFacts:
    values = {"system_id": 7, "name": "fs1", "status": "enrolled", "rpo": HOUR}
    return SystemFacts(**(values | changes))


def test_every_rule_kind_is_a_known_alert_kind() -> None:
    assert set(rules.OWNED_KINDS) <= set(KINDS)
    assert "damage" not in rules.OWNED_KINDS and "drill_failed" not in rules.OWNED_KINDS


def test_rpo_breached_for_late_enrolled_systems_only() -> None:
    late = system(late=True, last_backup_at=NOW - 3 * HOUR)
    (alert,) = rules.rpo_breached([late, system(system_id=8, name="ok"),
                                   system(system_id=9, status="retired", late=True)])
    assert (alert.kind, alert.system_id, alert.severity) == ("rpo_breached", 7, "critical")
    assert "2026-12-01 09:00 UTC" in alert.message and "1h" in alert.message
    (never,) = rules.rpo_breached([system(late=True)])
    assert "no good backup yet" in never.message


def test_backup_failed_when_the_last_attempt_failed_after_the_last_good_backup() -> None:
    failed = system(last_backup_at=NOW - 2 * HOUR, last_failure_at=NOW - HOUR,
                    last_failure_error="restic: repository locked")
    (alert,) = rules.backup_failed([failed])
    assert alert.kind == "backup_failed" and "repository locked" in alert.message
    assert alert.details["last_good_at"] == (NOW - 2 * HOUR).isoformat()
    # a good backup since (in the catalog, or by the agent's own word) clears it
    assert rules.backup_failed([system(last_backup_at=NOW, last_failure_at=NOW - HOUR)]) == []
    assert rules.backup_failed([system(last_backup_at=NOW - 2 * HOUR, agent_last_success=NOW,
                                       last_failure_at=NOW - HOUR)]) == []
    # never a good backup: the failure stands; no failure: nothing
    assert len(rules.backup_failed([system(last_failure_at=NOW)])) == 1
    assert rules.backup_failed([system(last_backup_at=NOW)]) == []
    assert rules.backup_failed([system(status="pending", last_failure_at=NOW)]) == []


def test_store_down_only_when_the_probe_said_unreachable() -> None:
    stores = [StoreFacts(1, "dc-a", reachable=True), StoreFacts(2, "dc-b"),
              StoreFacts(3, "vault", reachable=False, check_error="connection refused")]
    (alert,) = rules.store_down(stores)
    assert (alert.store_id, alert.severity) == (3, "critical")
    assert alert.message == "store vault is unreachable: connection refused"


def replica(**changes) -> ReplicaFacts:
    values = {"system_id": 7, "system": "fs1", "store_id": 2, "store": "dc-b",
              "lag_objects": 0, "lag_bytes": 0, "watermark_at": NOW - HOUR,
              "waiting_since": None}
    return ReplicaFacts(**(values | changes))


@pytest.mark.parametrize(("changes", "reason"), [
    ({"lag_objects": 11}, "more than 10 objects missing"),
    ({"lag_bytes": 2048}, "more than 1 KiB missing"),
    ({"watermark_at": NOW - 5 * HOUR, "waiting_since": NOW - 3 * HOUR},
     "a snapshot reported at 2026-12-01 09:00 UTC is not safe there yet (over 2h)"),
])
def test_replication_lag_over_each_threshold(changes, reason) -> None:
    settings = RuleSettings(replication_lag_objects=10, replication_lag_bytes=1024,
                            replication_lag_age=2 * HOUR)
    (alert,) = rules.replication_lag([replica(**changes)], settings, NOW)
    assert reason in alert.message and (alert.system_id, alert.store_id) == (7, 2)


def test_replication_within_thresholds_or_with_nothing_waiting_is_no_alert() -> None:
    settings = RuleSettings(replication_lag_objects=10, replication_lag_bytes=1024,
                            replication_lag_age=2 * HOUR)
    quiet = [replica(lag_objects=10, lag_bytes=1024),
             # an old watermark, but nothing reported since: nothing waits
             replica(watermark_at=NOW - 30 * DAY, waiting_since=None),
             # waiting, but not for long
             replica(watermark_at=NOW - 5 * HOUR, waiting_since=NOW - HOUR)]
    assert rules.replication_lag(quiet, settings, NOW) == []


def test_drill_overdue_like_flag_overdue() -> None:
    facts = DrillFacts(7, "fs1", period=30 * DAY, stores=("dc-a", "dc-b"),
                       last_passed={"dc-a": NOW - 2 * DAY, "dc-b": NOW - 40 * DAY},
                       enrolled_at=NOW - 90 * DAY)
    (alert,) = rules.drill_overdue([facts], NOW)
    assert alert.key == open_key("drill_overdue", 7, None, "")
    assert alert.message == ("fs1: no passing restore drill within the plan's period from "
                             "dc-b")
    young = DrillFacts(7, "fs1", period=30 * DAY, stores=("dc-a",), enrolled_at=NOW - DAY)
    assert rules.drill_overdue([young], NOW) == []


@pytest.mark.parametrize(("retention", "interval", "days"), [
    ({"keep_daily": 14, "keep_weekly": 8}, HOUR, 14),
    ({"keep_daily": 7}, 2 * DAY, 14),                  # backups every other day
    ({"keep_last": 10}, 6 * HOUR, 3),                  # 60 h, rounded up
    ({"keep_last": 2, "keep_hourly": 48}, HOUR, 2),
    ({"keep_weekly": 4}, DAY, 0),                      # only coarse tiers: no need
    ({}, DAY, 0),
])
def test_lock_days_needed(retention, interval, days) -> None:
    assert rules.lock_days_needed(retention, interval) == days


def test_object_lock_short() -> None:
    locked, plain = StoreFacts(1, "vault", object_lock=True), StoreFacts(2, "dc-a")
    wants_lock = LockFacts("fileserver", 7, {"keep_daily": 7}, DAY, (locked, plain))
    (alert,) = rules.object_lock_short([wants_lock])
    assert (alert.store_id, alert.subject) == (2, "fileserver")
    assert "dc-a has no Object Lock" in alert.message
    short = LockFacts("db", 3, {"keep_daily": 14}, DAY, (locked,))
    (alert,) = rules.object_lock_short([short])
    assert "for 3 days, fewer than the 14 days" in alert.message
    assert rules.object_lock_short([LockFacts("db", 14, {"keep_daily": 14}, DAY,
                                              (locked,))]) == []
    assert rules.object_lock_short([LockFacts("x", 0, {"keep_daily": 14}, DAY,
                                              (plain,))]) == []


def test_evaluate_keys_alerts_by_their_open_key() -> None:
    facts = Facts(systems=(system(late=True),), stores=(StoreFacts(3, "vault",
                                                                   reachable=False),))
    should = rules.evaluate(facts, RuleSettings(), NOW)
    assert set(should) == {open_key("rpo_breached", 7, None, ""),
                           open_key("store_down", None, 3, "")}


def test_reconcile_raises_new_and_changed_and_resolves_only_owned_kinds() -> None:
    same = ExpectedAlert("store_down", "store a is unreachable: x", store_id=1)
    changed = ExpectedAlert("store_down", "store b is unreachable: y", store_id=2)
    new = ExpectedAlert("rpo_breached", "fs1 late", system_id=7)
    should = {alert.key: alert for alert in (same, changed, new)}
    open_alerts = {
        same.key: OpenAlert(same.key, "store_down", same.message, "critical"),
        changed.key: OpenAlert(changed.key, "store_down", "store b is unreachable: x",
                               "critical"),
        "backup_failed:7:-:": OpenAlert("backup_failed:7:-:", "backup_failed", "m",
                                        "critical"),
        "damage:7:1:": OpenAlert("damage:7:1:", "damage", "lost", "critical"),
    }
    to_raise, to_resolve = rules.reconcile(should, open_alerts)
    assert {alert.key for alert in to_raise} == {changed.key, new.key}
    assert [alert.key for alert in to_resolve] == ["backup_failed:7:-:"]
    assert rules.reconcile({}, {}) == ([], [])


def test_key_parts_inverts_open_key() -> None:
    assert rules.key_parts(open_key("object_lock_short", None, 4, "a:b")) == (
        "object_lock_short", None, 4, "a:b")
    assert rules.key_parts(open_key("rpo_breached", 7, None, "")) == (
        "rpo_breached", 7, None, "")


def test_rule_settings_from_config() -> None:
    assert rules.rule_settings(SimpleNamespace()) == RuleSettings()
    assert rules.rule_settings(SimpleNamespace(alerts=None)) == RuleSettings()
    config = SimpleNamespace(alerts={"rules": {"replication_lag_objects": 5,
                                               "replication_lag_age": "6h",
                                               "probe_interval": 30, "rules_interval": "2m"}})
    assert rules.rule_settings(config) == RuleSettings(
        replication_lag_objects=5, replication_lag_age=6 * HOUR, probe_interval=30.0,
        rules_interval=120.0)
    for bad in ({"replication_lag_bytes": -1}, {"probe_interval": 0},
                {"replication_lag_age": "soon"}, {"surprise": 1}):
        with pytest.raises(ValueError, match="alerts.rules"):
            rules.rule_settings(SimpleNamespace(alerts={"rules": bad}))


def test_an_agents_last_failure_is_masked_by_the_centre() -> None:
    from drd.services.protocol import LastFailure

    failure = LastFailure(at=NOW, error="restic:\n s3:https://key:hunter22@s3.test/b "
                                          "refused " + "x" * 300)
    assert "hunter22" not in failure.error and "\n" not in failure.error
    assert failure.error.startswith("restic: s3:https://key:") and len(failure.error) == 200


def test_a_key_that_stays_enabled_after_a_retirement_is_critical_and_one_not_made_a_warning():
    from drd.alerting.rules import KEY_ATTEMPTS, KeyWorkFacts, key_work

    first = KeyWorkFacts(1, "fs1", 7, "dc-a", "disabling", attempts=1, reason="retired")
    assert key_work([first]) == []  # one failed try: the next pass may well succeed
    stuck = KeyWorkFacts(1, "fs1", 7, "dc-a", "disabling", attempts=KEY_ATTEMPTS,
                         reason="retired", last_error="cannot reach dc-a")
    waiting = KeyWorkFacts(2, "fs2", 8, "dc-b", "pending", attempts=KEY_ATTEMPTS + 3,
                           last_error="access denied")
    (critical, warning) = key_work([stuck, waiting])
    assert (critical.kind, critical.severity) == ("keys_not_disabled", "critical")
    assert "fs1" in critical.message and "dc-a" in critical.message
    assert "retired" in critical.message
    assert (critical.system_id, critical.store_id) == (1, 7)
    assert (warning.kind, warning.severity) == ("keys_not_made", "warning")
    assert "access denied" in warning.message
    assert key_work([KeyWorkFacts(3, "fs3", 9, "x", "superseded", attempts=9)]) == []
