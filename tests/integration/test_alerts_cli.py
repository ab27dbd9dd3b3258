"""``drd alerts``: open alerts from the catalog, repeated ones counted, resolved ones hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from drd.catalog.models import AuditEntry
from drd.config import load_config
from drd.services import alerts as alert_service
from drd.services.centre import open_catalog
from tests.integration.test_cli import drd

pytestmark = pytest.mark.integration


def test_alerts_lists_open_alerts_counts_repeats_and_hides_resolved(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    drd("init", home=home)
    assert "no open alerts" in drd("alerts", home=home).stdout
    catalog = open_catalog(load_config(home))
    with catalog.session() as session:
        alert_service.raise_alert(session, "damage", "data/ab/ab12 is lost on dc-a",
                                  subject="data/ab/ab12")
        alert_service.raise_alert(session, "damage", "data/ab/ab12 is lost on dc-a",
                                  subject="data/ab/ab12")
        alert_service.raise_alert(session, "check_failed", "restic check failed on dc-b")
    listed = {alert["kind"]: alert for alert in json.loads(drd("alerts", "--json",
                                                                 home=home).stdout)}
    damage, check = listed["damage"], listed["check_failed"]
    assert (damage["kind"], damage["count"], damage["resolved_at"]) == ("damage", 2, None)
    assert check["message"] == "restic check failed on dc-b"
    with catalog.session() as session:
        assert alert_service.resolve_alert(session, "check_failed")
        assert not alert_service.resolve_alert(session, "check_failed")
    assert [a["kind"] for a in json.loads(drd("alerts", "--json", home=home).stdout)] == [
        "damage"]
    shown = drd("alerts", "--all", home=home).stdout
    assert "resolved" in shown and "lost on dc-a" in shown
    catalog.dispose()


def test_an_operator_resolves_an_alert_by_hand_and_it_is_audited(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    drd("init", home=home)
    catalog = open_catalog(load_config(home))
    with catalog.session() as session:
        alert = alert_service.raise_alert(session, "forged_report",
                                          "fs1 reported snapshot 1a2b3c4d that the stores "
                                          "do not hold")
        alert_id = alert.id
    table = drd("alerts", home=home).stdout.splitlines()
    assert table[0].split()[0].lower() == "id" and table[1].split()[0] == str(alert_id)
    said = drd("alerts", "resolve", str(alert_id), "--note", "agent clock fixed",
               home=home).stdout
    assert f"resolved alert {alert_id} (forged_report)" in said
    assert json.loads(drd("alerts", "--json", home=home).stdout) == []
    again = drd("alerts", "resolve", str(alert_id), home=home, check=2)
    assert "resolved at" in again.stderr
    assert "no alert 999" in drd("alerts", "resolve", "999", home=home, check=2).stderr
    with catalog.session() as session:
        (entry,) = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "alert.resolve")).all()
    assert entry.actor.startswith("cli:") and entry.details["kind"] == "forged_report"
    assert entry.details["note"] == "agent clock fixed"
    catalog.dispose()
