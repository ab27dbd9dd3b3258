"""``drd alerts``: open alerts from the catalog, repeated ones counted, resolved ones hidden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
