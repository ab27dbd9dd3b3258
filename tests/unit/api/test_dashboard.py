"""The dashboard's pure decisions: RPO state, which late system comes first, and which
login and logout requests another site sent."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from drd.api.routes.dashboard import cross_site_refusal, origin_of
from drd.services.dashboard import SystemLine, attention_order, rpo_state

HOUR = 3600.0


def _system(*, status: str = "enrolled", policy: str | None = "fileserver",
            rpo_seconds: float | None = HOUR, late: bool = False) -> SimpleNamespace:
    """What :func:`rpo_state` reads of a :class:`drd.services.views.SystemSummary`."""
    return SimpleNamespace(status=status, policy=policy, rpo_seconds=rpo_seconds, late=late)


@pytest.mark.parametrize(("system", "state"), [
    (_system(), "ok"),
    (_system(late=True), "late"),
    (_system(status="pending"), "pending"),
    (_system(policy=None, rpo_seconds=None), "no policy"),
    (_system(rpo_seconds=None), "no policy"),  # a policy without an RPO cannot be judged
])
def test_rpo_state(system: SimpleNamespace, state: str) -> None:
    assert rpo_state(system) == state


def _line(name: str, state: str, age_seconds: float | None = None) -> SystemLine:
    return SystemLine(system=name, department="parks", policy="fileserver", state=state,
                      last_backup_at=None, age_seconds=age_seconds, rpo_seconds=HOUR)


def test_late_systems_come_first_the_latest_of_them_at_the_top() -> None:
    ordered = attention_order([
        _line("a-ok", "ok"), _line("b-pending", "pending"),
        _line("c-late", "late", 2 * HOUR), _line("d-none", "no policy"),
        _line("e-later", "late", 9 * HOUR), _line("f-late-never", "late")])
    assert [line.system for line in ordered] == [
        "f-late-never", "e-later", "c-late", "d-none", "b-pending", "a-ok"]


@pytest.mark.parametrize(("url", "origin"), [
    ("https://drd.example.org", "https://drd.example.org"),
    ("HTTPS://DRD.Example.org:443/", "https://drd.example.org"),
    ("http://127.0.0.1:8443/path?x=1", "http://127.0.0.1:8443"),
    ("http://[::1]:80", "http://[::1]"),
    ("null", None), ("", None), ("ftp://drd.example.org", None),
    ("https://drd.example.org:99999", None),
])
def test_origin_of(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


OWN = {"http://10.0.0.5:8443", "https://drd.example.org"}


@pytest.mark.parametrize(("origin", "fetch_site"), [
    (None, None),  # no browser, or one that sends neither
    ("http://10.0.0.5:8443", "same-origin"),
    ("https://drd.example.org", None),  # through the TLS proxy of public_url
    ("https://DRD.example.org:443", "same-origin"),
    (None, "none"),  # typed into the address bar, a bookmark
    (None, "same-site"),
    ("null", "same-origin"),  # the login form's own POST under Referrer-Policy: no-referrer
])
def test_requests_from_this_server_are_accepted(origin: str | None,
                                                fetch_site: str | None) -> None:
    assert cross_site_refusal(origin, fetch_site, OWN) is None


@pytest.mark.parametrize(("origin", "fetch_site", "reason"), [
    ("https://evil.example", None, "another origin"),
    ("https://drd.example.org.evil.example", None, "another origin"),
    ("http://drd.example.org", None, "another origin"),  # not the https origin
    ("null", None, "another origin"),  # a sandboxed frame or a data: page
    ("null", "same-site", "another origin"),  # a sibling subdomain's page
    ("null", "cross-site", "Sec-Fetch-Site"),
    ("https://evil.example", "same-origin", "another origin"),
    (None, "cross-site", "Sec-Fetch-Site"),
    ("https://drd.example.org", "cross-site", "Sec-Fetch-Site"),
])
def test_requests_another_site_sent_are_refused(origin: str | None, fetch_site: str | None,
                                                reason: str) -> None:
    refusal = cross_site_refusal(origin, fetch_site, OWN)
    assert refusal is not None and reason in refusal and "\n" not in refusal
