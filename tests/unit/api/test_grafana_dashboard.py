"""docs/grafana-dashboard.json: importable (a Prometheus datasource input), and every query
names only series ``GET /metrics`` exports, with a panel for every family; and what the
collector makes of a readout (pure, no catalog)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from drd.api.routes.metrics import (
    FAMILIES,
    exposed_series,
    families,
    render_text,
    samples_of,
)
from drd.services.metrics import JobDurations, MetricsReadout, RunCounts, StoreReadout
from drd.verification.select import Coverage

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bdrd_[a-z0-9_]+\b")
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"${variable['name']}", variable["query"]["query"]


def test_it_is_an_importable_dashboard_with_a_prometheus_input(dashboard: dict) -> None:
    assert dashboard["schemaVersion"] >= 36 and dashboard["uid"] and dashboard["title"]
    assert dashboard["__inputs"] == [{
        "name": "DS_PROMETHEUS", "label": "Prometheus",
        "description": "The Prometheus that scrapes drd's /metrics", "type": "datasource",
        "pluginId": "prometheus", "pluginName": "Prometheus"}]
    panels = list(_panels(dashboard["panels"]))
    assert len({panel["id"] for panel in panels}) == len(panels)  # ids are unique
    for panel in panels:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}, panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, panel["title"]
    used = {match for _, query in _queries(dashboard) for match in re.findall(
        r"\$(\w+)", query)} - {"__rate_interval", "__interval", "__range"}
    assert used <= {variable["name"] for variable in dashboard["templating"]["list"]}


def test_every_query_names_only_exported_series(dashboard: dict) -> None:
    exported = exposed_series()
    for where, query in _queries(dashboard):
        names = METRIC_NAME.findall(query)
        assert names, (where, query)
        assert set(names) <= exported, (where, sorted(set(names) - exported))
        assert query.count("(") == query.count(")"), (where, query)
        assert query.count("[") == query.count("]"), (where, query)
        assert query.count("{") == query.count("}"), (where, query)


def test_every_family_has_a_panel(dashboard: dict) -> None:
    named = {name for _, query in _queries(dashboard) for name in METRIC_NAME.findall(query)}
    missing = [family.name for family in FAMILIES if not set(family.series()) & named]
    assert not missing


def test_the_issue_s_metrics_are_all_exported() -> None:
    assert {
        "drd_system_last_backup_timestamp_seconds", "drd_system_rpo_seconds",
        "drd_system_backup_age_seconds", "drd_store_up", "drd_store_replication_lag_objects",
        "drd_store_replication_lag_bytes", "drd_store_verify_coverage_ratio",
        "drd_store_oldest_unverified_seconds", "drd_drill_last_success_timestamp_seconds",
        "drd_drill_rto_seconds", "drd_job_runs_total", "drd_job_duration_seconds_bucket",
        "drd_open_alerts", "drd_info"} <= exposed_series()


# --- what the collector makes of a readout (pure) -----------------------------------------

T0 = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)


def _samples(readout: MetricsReadout) -> dict[tuple, float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families(readout) for sample in family.samples}


def test_a_readout_becomes_samples_and_unknowns_stay_absent() -> None:
    readout = MetricsReadout(
        now=T0, systems=[], drills=[], job_runs={("verify", "failed"): 3}, open_alerts={},
        job_durations=[JobDurations(job="verify", count=3, sum_seconds=90.0,
                                    buckets=(0, 0, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3))],
        stores=[StoreReadout(name="new", reachable=None, checked_at=None, lag_objects=0,
                             lag_bytes=0, replicas_failing=0, coverage=None),
                StoreReadout(name="down", reachable=False, checked_at=T0, lag_objects=4,
                             lag_bytes=40, replicas_failing=1, coverage=None)])
    got = _samples(readout)
    assert ("drd_store_up", (("store", "new"),)) not in got  # never probed: no sample
    assert got[("drd_store_up", (("store", "down"),))] == 0
    assert got[("drd_store_replication_lag_bytes", (("store", "down"),))] == 40
    assert got[("drd_job_runs_total", (("job", "verify"), ("outcome", "failed")))] == 3
    assert got[("drd_job_duration_seconds_bucket", (("job", "verify"), ("le", "15.0")))] == 1
    assert got[("drd_job_duration_seconds_bucket", (("job", "verify"), ("le", "+Inf")))] == 3
    assert got[("drd_job_duration_seconds_sum", (("job", "verify"),))] == 90
    assert {name for name, _ in got} <= exposed_series()


def test_the_text_writer_says_what_prometheus_client_says() -> None:
    readout = MetricsReadout(
        now=T0, drills=[], open_alerts={("damage", "critical"): 2},
        job_runs={("drill", "passed"): 1},
        job_durations=[JobDurations(job="drill", count=1, sum_seconds=0.25,
                                    buckets=(1,) * 12)],
        systems=[], stores=[StoreReadout(
            name='odd "name"\\ with\nlines', reachable=True, checked_at=T0, lag_objects=1,
            lag_bytes=2**40, replicas_failing=0, coverage=Coverage(
                ratio=1 / 3, oldest_unverified=dt.timedelta(seconds=1.5), bytes_tracked=3,
                objects_tracked=3, bytes_verified=1))])

    class Collector:
        def collect(self):
            return families(readout)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())

    def parsed(text: str) -> set[tuple]:
        return {(family.name, family.type, family.documentation, sample.name,
                 tuple(sorted(sample.labels.items())), sample.value)
                for family in text_string_to_metric_families(text)
                for sample in family.samples}

    ours = render_text(samples_of(readout)).decode()
    assert parsed(ours) == parsed(generate_latest(registry).decode())
    assert 'store="odd \\"name\\"\\\\ with\\nlines"' in ours


def test_run_counts_add_up_into_cumulative_buckets() -> None:
    first = RunCounts().add([("verify", "succeeded", 0, 2, 1.0), ("verify", "failed", 3, 1, 50.0)])
    second = RunCounts().add([("verify", "succeeded", 12, 1, 90_000.0),
                              ("drill", "passed", 5, 1, 600.0)])
    total = RunCounts().merge(first).merge(second)
    assert total.runs == {("verify", "succeeded"): 3, ("verify", "failed"): 1,
                          ("drill", "passed"): 1}
    verify = {durations.job: durations for durations in total.durations()}["verify"]
    assert (verify.count, verify.sum_seconds) == (4, 90_051.0)
    assert verify.buckets == (2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3)  # one past the last bound
    assert first.runs == {("verify", "succeeded"): 2, ("verify", "failed"): 1}  # unchanged


def test_the_documented_scrape_config_keeps_drds_own_job_label() -> None:
    """Without honor_labels Prometheus renames drd's ``job`` label (the job kind) to
    ``exported_job``, and every panel grouped ``by (job)`` collapses into one series."""
    import textwrap

    import yaml

    text = (DASHBOARD.parent / "metrics.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    configs = [yaml.safe_load(textwrap.dedent(block)) for block in blocks
               if "scrape_configs" in block]
    assert configs, "docs/metrics.md shows a Prometheus scrape config"
    (job,) = configs[0]["scrape_configs"]
    assert job["honor_labels"] is True
    assert job["metrics_path"] == "/metrics"
