"""``GET /metrics``: Prometheus metrics, computed from the catalog at scrape time.

Each scrape reads the catalog once (:func:`drd.services.metrics.read_metrics`); the
readout becomes samples (:func:`samples_of`, pure) written in the Prometheus text
format by :func:`render_text` -- some ten times faster than prometheus-client's
``generate_latest`` for the 50,000 and more samples of a centre of 10,000 systems.
:class:`CatalogCollector` yields the same families to a prometheus-client registry (a
test checks both say the same). Only a token that reads everything (operator, admin)
may scrape. Every family is listed in :data:`FAMILIES`; docs/metrics.md explains each.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import APIRouter, Response
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.samples import Sample as PrometheusSample
from prometheus_client.utils import floatToGoString

from drd import __version__
from drd.api.auth import Caller
from drd.api.context import Context
from drd.catalog import Catalog
from drd.services.metrics import JOB_DURATION_BUCKETS, MetricsReadout, read_metrics
from drd.services.refusals import NotAllowed

router = APIRouter(tags=["metrics"])


@dataclass(frozen=True)
class Family:
    """One metric family: its name, type (``gauge``, ``counter``, ``histogram``), help
    and label names."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()

    def empty(self) -> Metric:
        """The family without samples."""
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == "histogram":
            return HistogramMetricFamily(self.name, self.help, labels=self.labels)
        return GaugeMetricFamily(self.name, self.help, labels=self.labels)

    def series(self) -> tuple[str, ...]:
        """The names its samples carry in the exposition (what PromQL selects)."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return tuple(f"{self.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        return (self.name,)


SYSTEM, STORE, JOB = ("system", "department"), ("store",), ("job",)
FAMILIES: tuple[Family, ...] = (
    Family("drd_info", "gauge", "Always 1; the drd version serving the scrape.", ("version",)),
    Family("drd_system_last_backup_timestamp_seconds", "gauge",
           "Time of the system's newest good backup (complete, in min_copies stores).",
           SYSTEM),
    Family("drd_system_backup_age_seconds", "gauge",
           "Seconds since the system's newest good backup.", SYSTEM),
    Family("drd_system_rpo_seconds", "gauge", "The RPO of the system's policy.", SYSTEM),
    Family("drd_system_late", "gauge",
           "1 when the system is past its RPO (or never backed up within one RPO of "
           "enrolling), else 0.", SYSTEM),
    Family("drd_store_up", "gauge",
           "1 when the daemon's latest probe reached the store, 0 when it did not; no "
           "sample before the first probe.", STORE),
    Family("drd_store_last_check_timestamp_seconds", "gauge",
           "Time of the daemon's latest probe of the store.", STORE),
    Family("drd_store_replication_lag_objects", "gauge",
           "Objects the store's replicas lacked after their last replication pass "
           "(summed over systems).", STORE),
    Family("drd_store_replication_lag_bytes", "gauge",
           "Bytes the store's replicas lacked after their last replication pass (summed "
           "over systems).", STORE),
    Family("drd_store_replication_failing", "gauge",
           "Replicas on the store whose last replication pass ended with an error.", STORE),
    Family("drd_store_verify_coverage_ratio", "gauge",
           "Share (0-1) of the store's bytes verified within their policy's verification "
           "period; no sample when nothing is tracked.", STORE),
    Family("drd_store_oldest_unverified_seconds", "gauge",
           "How long the store's least recently proven byte has gone unproven.", STORE),
    Family("drd_drill_last_success_timestamp_seconds", "gauge",
           "End of the newest passing restore drill of the system from the store.",
           ("system", "store")),
    Family("drd_drill_last_passed", "gauge",
           "1 when the newest finished drill of the system from the store passed, else 0.",
           ("system", "store")),
    Family("drd_drill_rto_seconds", "gauge",
           "Measured RTO of the newest finished drill of the system from the store.",
           ("system", "store")),
    Family("drd_job_runs", "counter", "Finished job runs by job kind and outcome.",
           ("job", "outcome")),
    Family("drd_job_duration_seconds", "histogram", "Durations of finished job runs.", JOB),
    Family("drd_open_alerts", "gauge", "Open alerts by kind and severity.",
           ("kind", "severity")),
)


def exposed_series() -> set[str]:
    """Every sample name a scrape can carry (for checking dashboards and alert rules)."""
    return {name for family in FAMILIES for name in family.series()}


Sample = tuple[str, tuple[str, ...], tuple[str, ...], float]
"""One sample: its series name, label names, label values and value."""


@dataclass
class FamilySamples:
    """A family with its samples, in exposition order."""

    family: Family
    samples: list[Sample]


def _timestamp(value: dt.datetime) -> float:
    return value.timestamp()


def _bound(bound: float) -> str:
    return floatToGoString(float(bound))


def samples_of(readout: MetricsReadout) -> list[FamilySamples]:
    """The samples of every family in ``readout``, in :data:`FAMILIES`' order (pure).

    A value the catalog does not know (a store never probed, a system never backed up)
    has no sample rather than a made-up one.
    """
    out = {family.name: FamilySamples(family, []) for family in FAMILIES}

    def add(name: str, values: tuple[str, ...], value: float) -> None:
        family = out[name].family
        out[name].samples.append((family.series()[0], family.labels, values, value))

    add("drd_info", (__version__,), 1)
    for system in readout.systems:
        labels = (system.system, system.department)
        if system.last_backup_at is not None:
            add("drd_system_last_backup_timestamp_seconds", labels,
                _timestamp(system.last_backup_at))
        if system.age is not None:
            add("drd_system_backup_age_seconds", labels, system.age.total_seconds())
        if system.rpo is not None:
            add("drd_system_rpo_seconds", labels, system.rpo.total_seconds())
        add("drd_system_late", labels, 1 if system.late else 0)
    for store in readout.stores:
        labels = (store.name,)
        if store.reachable is not None:
            add("drd_store_up", labels, 1 if store.reachable else 0)
        if store.checked_at is not None:
            add("drd_store_last_check_timestamp_seconds", labels, _timestamp(store.checked_at))
        add("drd_store_replication_lag_objects", labels, store.lag_objects)
        add("drd_store_replication_lag_bytes", labels, store.lag_bytes)
        add("drd_store_replication_failing", labels, store.replicas_failing)
        coverage = store.coverage
        if coverage is not None and coverage.ratio is not None:
            add("drd_store_verify_coverage_ratio", labels, coverage.ratio)
        if coverage is not None and coverage.oldest_unverified is not None:
            add("drd_store_oldest_unverified_seconds", labels,
                coverage.oldest_unverified.total_seconds())
    for drill in readout.drills:
        labels = (drill.system, drill.store)
        if drill.last_success_at is not None:
            add("drd_drill_last_success_timestamp_seconds", labels,
                _timestamp(drill.last_success_at))
        if drill.last_passed is not None:
            add("drd_drill_last_passed", labels, 1 if drill.last_passed else 0)
        if drill.last_rto_seconds is not None:
            add("drd_drill_rto_seconds", labels, drill.last_rto_seconds)
    for (job, outcome), count in sorted(readout.job_runs.items()):
        add("drd_job_runs", (job, outcome), count)
    histogram = out["drd_job_duration_seconds"].samples
    bucket, total, count = (f"drd_job_duration_seconds_{suffix}"
                            for suffix in ("bucket", "sum", "count"))
    for durations in readout.job_durations:
        for bound, runs in zip(JOB_DURATION_BUCKETS, durations.buckets, strict=True):
            histogram.append((bucket, ("job", "le"), (durations.job, _bound(bound)), runs))
        histogram.append((bucket, ("job", "le"), (durations.job, "+Inf"), durations.count))
        histogram.append((total, ("job",), (durations.job,), durations.sum_seconds))
        histogram.append((count, ("job",), (durations.job,), durations.count))
    for (kind, severity), count in sorted(readout.open_alerts.items()):
        add("drd_open_alerts", (kind, severity), count)
    return list(out.values())


def _escape(value: str) -> str:
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    return floatToGoString(value)  # +Inf, -Inf, NaN


def render_text(families: list[FamilySamples]) -> bytes:
    """The Prometheus text format (0.0.4) of ``families`` (pure).

    Written here rather than by prometheus-client's ``generate_latest``, which takes
    about 20 us a sample: some 1.5 s for a centre of 10,000 systems, where this takes a
    tenth of that. A test checks that both say the same.
    """
    lines: list[str] = []
    for entry in families:
        family = entry.family
        name = family.series()[0] if family.kind == "counter" else family.name
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {family.kind}")
        for series, names, values, value in entry.samples:
            labels = ",".join([f'{label}="{_escape(text)}"'
                               for label, text in zip(names, values, strict=True)])
            lines.append(f"{series}{{{labels}}} {_number(value)}" if labels
                         else f"{series} {_number(value)}")
    lines.append("")
    return "\n".join(lines).encode()


def families(readout: MetricsReadout) -> list[Metric]:
    """``readout`` as prometheus-client families (pure), for its registries and encoders."""
    result = []
    for entry in samples_of(readout):
        metric = entry.family.empty()
        metric.samples = [PrometheusSample(series, dict(zip(names, values, strict=True)),
                                           float(value))
                          for series, names, values, value in entry.samples]
        result.append(metric)
    return result


class CatalogCollector:
    """A prometheus-client collector reading ``catalog`` on each :meth:`collect`: the
    same families as ``GET /metrics``, for a registry of one's own (never the global
    one, whose process metrics would say nothing of the centre)."""

    def __init__(self, catalog: Catalog, now: dt.datetime | None = None) -> None:
        self.catalog = catalog
        self.now = now

    def describe(self) -> Iterator[Metric]:
        return (family.empty() for family in FAMILIES)

    def collect(self) -> Iterator[Metric]:
        yield from families(read_metrics(self.catalog, self.now))


def scrape(catalog: Catalog, now: dt.datetime | None = None) -> tuple[bytes, str]:
    """One scrape of ``catalog``: the body, in the Prometheus text format
    (:func:`render_text`), and its content type.

    Always that format, whatever the ``Accept`` header prefers: Prometheus asks for
    OpenMetrics first but reads this as well, and prometheus-client's OpenMetrics encoder
    is the slow one :func:`render_text` avoids.
    """
    return render_text(samples_of(read_metrics(catalog, now))), CONTENT_TYPE_PLAIN_0_0_4


@router.get(
    "/metrics", response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                     "description": "Prometheus text format (docs/metrics.md)"},
               401: {"description": "no valid token"},
               403: {"description": "the token does not read everything"}})
def metrics(caller: Caller, context: Context) -> Response:
    """Prometheus metrics of every system, store, drill, job and open alert, read from
    the catalog now. Needs an operator or admin token."""
    if not caller.reads_everything:
        raise NotAllowed("metrics cover every department: they need an operator or admin "
                         "token")
    body, content_type = scrape(context.catalog, context.now())
    return Response(body, media_type=content_type)
