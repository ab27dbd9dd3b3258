"""The dashboard at ``/`` on a real catalog (SQLite and PostgreSQL), through the real app:
token login and its cookie (Secure over https and behind an https public_url), login and
logout refused to other sites, what each role sees, escaping, paging, counts kept by the
read API's cache, security headers (the HTML drill report's too), and the cookie
accepted by the API's reads but never its writes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.requests import Request

from drd.api.app import create_app
from drd.api.auth import SESSION_COOKIE, current_principal
from drd.api.context import ApiContext
from drd.catalog import Catalog
from drd.catalog.models import (
    Alert,
    Department,
    Drill,
    Job,
    JobRun,
    Policy,
    Replica,
    Snapshot,
    SnapshotCopy,
    System,
    Token,
)
from drd.catalog.models import Store as StoreRow
from drd.catalog.types import utcnow
from drd.config import load_config
from drd.services import tokens
from drd.services.centre import initialise, open_catalog, open_master_key
from drd.services.refusals import NotAuthenticated
from restore_drills.report import sign_report
from tests.unit.restore_drills.sample import report as sample_report

pytestmark = pytest.mark.integration

EVIL = '<script>alert("x")</script>&'
SECURITY_HEADERS = {
    "content-security-policy": ("default-src 'none'; style-src 'unsafe-inline'; "
                                "img-src 'self' data:; form-action 'self'; "
                                "frame-ancestors 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass
class Seeded:
    """A centre with a known catalog: ``fs1`` of parks within its RPO, ``roads-db`` of
    roads late, with a failed backup run, an open alert and a passed drill; stores up,
    down and never probed."""

    home: Path
    catalog: Catalog
    app: object
    operator: str
    owner: str
    now: dt.datetime


def seed(catalog: Catalog, now: dt.datetime, extra_systems: int = 0) -> None:
    """Fill ``catalog`` with the systems, stores, runs, alerts and a drill of
    :class:`Seeded` (``extra_systems`` more of parks, within their RPO)."""
    with catalog.session() as session:
        parks, roads = Department(name="parks"), Department(name="roads")
        policy = Policy(name="fileserver", document={"rpo": "1h", "min_copies": 1,
                                                     "stores": ["dc-a"]},
                        source_text="policy: fileserver\n", sha256="0" * 64)
        up = StoreRow(name="dc-a", kind="file", url="file:///srv/dc-a", region="region-a",
                      reachable=True, checked_at=now - dt.timedelta(minutes=2))
        down = StoreRow(name="vault-s3", kind="s3", url="s3://drd/city", region="region-b",
                        reachable=False, checked_at=now - dt.timedelta(minutes=1),
                        check_error="connection refused by s3.region-b.test")
        unprobed = StoreRow(name="dc-new", kind="file", url="file:///srv/new",
                            region="region-a")
        session.add_all([parks, roads, policy, up, down, unprobed])
        session.flush()
        enrolled = now - dt.timedelta(days=3)
        fs1 = System(name="fs1", department_id=parks.id, policy_id=policy.id,
                     status="enrolled", enrolled_at=enrolled, hostname="fs1.parks")
        late = System(name="roads-db", department_id=roads.id, policy_id=policy.id,
                      status="enrolled", enrolled_at=enrolled, hostname="db.roads")
        evil = System(name=EVIL, department_id=parks.id, status="pending")
        session.add_all([fs1, late, evil])
        session.add_all(System(name=f"parks-{index:04d}", department_id=parks.id,
                               policy_id=policy.id, status="enrolled", enrolled_at=now)
                        for index in range(extra_systems))
        session.flush()
        for system, hours_ago in ((fs1, 0.25), (late, 5)):
            snapshot = Snapshot(restic_id=f"{system.id:064x}", system_id=system.id,
                                time=now - dt.timedelta(hours=hours_ago),
                                hostname=system.hostname, tree="a" * 64)
            session.add(snapshot)
            session.flush()
            session.add(SnapshotCopy(snapshot_id=snapshot.id, store_id=up.id,
                                     state="present"))
        session.add(Replica(system_id=fs1.id, store_id=down.id, lag_objects=12,
                            lag_bytes=3 * 1024 * 1024))
        job = Job(name="backup:roads-db", kind="backup", system_id=late.id)
        session.add(job)
        session.flush()
        session.add(JobRun(job_id=job.id, system_id=late.id, outcome="failed",
                           started_at=now - dt.timedelta(hours=1),
                           finished_at=now - dt.timedelta(minutes=55),
                           error="restic exited 1: <repository locked>"))
        session.add(Alert(kind="replication_failed", severity="critical", store_id=down.id,
                          open_key="replication_failed:-:x:", message="vault-s3 is down",
                          opened_at=now - dt.timedelta(minutes=30),
                          last_seen_at=now - dt.timedelta(minutes=30)))
        session.add(Drill(system_id=fs1.id, store_id=up.id,
                          started_at=now - dt.timedelta(hours=2),
                          finished_at=now - dt.timedelta(hours=2) + dt.timedelta(seconds=90),
                          passed=True, rto_seconds=84.0, rpo_seconds=600.0,
                          report={"passed": True}))


def seeded_centre(tmp_path: Path, database_url: str, extra_systems: int = 0,
                  public_url: str = "") -> Seeded:
    """A centre in ``tmp_path`` on ``database_url``, seeded by :func:`seed` (its drill
    with a signed report), with an operator token and an owner token of parks."""
    home = tmp_path / "centre"
    initialise(home, database_url)
    config = dataclasses.replace(load_config(home), public_url=public_url)
    catalog = open_catalog(config)
    now = utcnow()
    seed(catalog, now, extra_systems)
    operator = tokens.create_token(catalog, role="operator", name="night-shift").token
    owner = tokens.create_token(catalog, role="owner", name="parks-owner",
                                departments=["parks"]).token
    app = create_app(catalog, open_master_key(config), config)
    key = app.state.drd.keystore.signing_private_key()
    with catalog.session() as session:
        drill = session.scalars(sa.select(Drill)).one()
        drill.report = sample_report(id=drill.id, system="fs1", passed=True, store="dc-a")
        drill.signature = sign_report(key, drill.report)
    return Seeded(home, catalog, app, operator.reveal(), owner.reveal(), now)


@pytest.fixture
def centre(tmp_path: Path, database_url: str, monkeypatch) -> Iterator[Seeded]:
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    yield seeded_centre(tmp_path, database_url)


def log_in(client: TestClient, token: str, **headers: str):
    return client.post("/login", content=f"token={token}",
                       headers={"Content-Type": "application/x-www-form-urlencoded"} | {
                           name.replace("_", "-"): value for name, value in headers.items()},
                       follow_redirects=False)


def rows(page: str, table: str = "all") -> list[tuple[str, str]]:
    """A systems table (``late`` or ``all``): (RPO state label, system name as HTML) per
    row."""
    start = page.find(f'data-table="{table}"')
    if start < 0:
        return []
    return re.findall(r'<tr class="row-[^"]+" data-system="[^"]*">\s*<td><span class="state '
                      r'state-[^"]+">([^<]+)</span></td>\s*<td>([^<]*)</td>',
                      page[start:page.index("</table>", start)])


def test_operator_logs_in_and_sees_every_system_store_failure_and_drill(
        centre: Seeded) -> None:
    with TestClient(centre.app) as client:
        response = client.get("/", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"

        form = client.get("/login")
        assert form.status_code == 200 and 'name="token"' in form.text
        assert {key: form.headers[key] for key in SECURITY_HEADERS} == SECURITY_HEADERS
        assert "<script" not in form.text and "http" not in form.text.replace(
            'http-equiv', '')  # nothing fetched from elsewhere

        for bad, reason in (("not-a-token", "unknown token"), ("", "Enter a token")):
            refused = log_in(client, bad)
            assert refused.status_code == 401 and reason in refused.text
            assert SESSION_COOKIE not in refused.cookies
        garbled = client.post("/login", content=b"token=\xff\xfe",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert garbled.status_code == 401

        accepted = log_in(client, centre.operator)
        assert accepted.status_code == 303 and accepted.headers["location"] == "/"
        cookie = accepted.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        for attribute in ("HttpOnly", "SameSite=strict", "Path=/", "Max-Age=43200"):
            assert attribute.lower() in cookie.lower(), cookie
        assert "secure" not in cookie.lower()  # plain HTTP here: https sets Secure

        page = client.get("/")
        assert page.status_code == 200, page.text
        assert {key: page.headers[key] for key in SECURITY_HEADERS} == SECURITY_HEADERS
        text = page.text
        assert rows(text, "late") == [("late", "roads-db")]
        assert sorted(rows(text)) == [("late", "roads-db"), ("ok", "fs1"), (
            "pending", "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;")]
        assert "<title>drd: 1 late of 3 systems</title>" in text
        assert EVIL not in text and "<script" not in text
        assert "night-shift (operator)" in text and "refreshed at" in text
        assert '<meta http-equiv="refresh" content="60">' in text
        stores = text[text.index('id="stores"'):text.index('id="failures"')]
        for name, state in (("dc-a", "up"), ("dc-new", "unknown"),
                            ("vault-s3", "down")):
            assert re.search(rf'state-[a-z-]+">{state}</span></td>\s*<td>{name}</td>',
                             stores), (name, state)
        assert "connection refused" in stores and "12 objects, 3.0 MiB" in stores
        failures = text[text.index('id="failures"'):text.index('id="drills"')]
        assert failures.index("replication_failed") < failures.index("job: backup")
        assert "restic exited 1: &lt;repository locked&gt;" in failures
        drills = text[text.index('id="drills"'):]
        assert "passed" in drills and "1m 24s" in drills
        assert re.search(r'href="/v1/drills/\d+/report\?format=html"', drills)

        # the cookie opens the API's reads, as the report links need
        assert client.get("/v1/whoami").json()["name"] == "night-shift"

        assert client.post("/logout", follow_redirects=False).headers["location"] == "/login"
        assert SESSION_COOKIE not in client.cookies
        assert client.get("/", follow_redirects=False).status_code == 303
        assert client.get("/v1/whoami").status_code == 401


def test_an_owner_sees_only_its_departments_systems_and_no_stores(centre: Seeded) -> None:
    with TestClient(centre.app, base_url="https://testserver") as client:
        accepted = log_in(client, centre.owner)
        assert "secure" in accepted.headers["set-cookie"].lower()
        text = client.get("/").text
    assert "fs1" in [name for _, name in rows(text)] and rows(text, "late") == []
    assert "roads-db" not in text and "roads" not in text
    assert 'id="stores"' not in text and "vault-s3" not in text  # shared infrastructure
    assert "No failed job runs and no open alerts." in text
    assert "fs1" in text[text.index('id="drills"'):]


def test_a_revoked_token_ends_the_session_and_an_agent_cannot_log_in(
        centre: Seeded) -> None:
    with centre.catalog.session() as session:
        fs1 = session.scalar(sa.select(System.id).where(System.name == "fs1"))
        session.add(Token(name="agent-fs1", role="agent", systems=["fs1"],
                          token_hash=Token.hash_token("agent-token-value")))
        assert fs1 is not None
    with TestClient(centre.app) as client:
        refused = log_in(client, "agent-token-value")
        assert refused.status_code == 403 and "agent" in refused.text
        log_in(client, centre.operator)
        assert client.get("/").status_code == 200
        tokens.revoke_token(centre.catalog, "night-shift")
        gone = client.get("/", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"] == "/login"
        assert f'{SESSION_COOKIE}=""' in gone.headers["set-cookie"]


def test_the_cookie_is_never_enough_for_a_write(centre: Seeded) -> None:
    context: ApiContext = centre.app.state.drd

    def request(method: str, cookie: str | None) -> Request:
        headers = [(b"cookie", f"{SESSION_COOKIE}={cookie}".encode())] if cookie else []
        return Request({"type": "http", "method": method, "path": "/v1/x", "headers": headers,
                        "query_string": b""})

    assert current_principal(request("GET", centre.operator), context, None).name == (
        "night-shift")
    assert current_principal(request("HEAD", centre.operator), context, None).role == (
        "operator")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        with pytest.raises(NotAuthenticated):
            current_principal(request(method, centre.operator), context, None)
    writes = [path for path, operations in centre.app.openapi()["paths"].items()
              if path.startswith("/v1/systems/") and "post" in operations]
    with TestClient(centre.app) as client:
        log_in(client, centre.operator)
        for path in writes:  # backup-now, once the API has it
            answer = client.post(re.sub(r"\{[^}]+\}", "fs1", path))
            assert answer.status_code == 401, (path, answer.text)


def test_a_long_list_of_systems_is_paged_by_name_after_the_late_ones(
        tmp_path: Path, database_url: str, monkeypatch) -> None:
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    centre = seeded_centre(tmp_path, database_url, extra_systems=117)  # 120 in all
    seen: list[str] = []
    with TestClient(centre.app) as client:
        log_in(client, centre.operator)
        page = client.get("/").text
        assert rows(page, "late") == [("late", "roads-db")] and "first page" not in page
        while True:
            assert len(rows(page)) == (20 if len(seen) == 100 else 50)
            seen += [name for _, name in rows(page)]
            following = re.search(r'href="/\?cursor=([^"]+)" rel="next"', page)
            if following is None:
                break
            page = client.get(f"/?cursor={following.group(1)}").text
            assert rows(page, "late") == [("late", "roads-db")] and 'rel="first"' in page
        assert len(seen) == len(set(seen)) == 120 and "parks-0116" in seen
        for bad in ("x", "eyJhIjoxfQ", "A" * 500):
            refused = client.get("/", params={"cursor": bad})
            assert refused.status_code == 422 and "cursor" in refused.json()["detail"]


def test_counts_and_late_systems_are_kept_by_the_read_cache(centre: Seeded) -> None:
    """The counts and the late list are the read API's, kept by the app's read cache:
    a page load does not judge every system again; the systems table is read fresh."""
    with TestClient(centre.app) as client:
        log_in(client, centre.operator)
        first = client.get("/").text
        status = client.get("/v1/status").json()
        assert status["counts"]["late"] == 1 and status["counts"]["systems"] == 3
        assert "<title>drd: 1 late of 3 systems</title>" in first
        with centre.catalog.session() as session:
            parks = session.scalar(sa.select(Department.id).where(Department.name == "parks"))
            session.add(System(name="fs9", department_id=parks, status="enrolled",
                               policy_id=session.scalar(sa.select(Policy.id)),
                               enrolled_at=centre.now - dt.timedelta(days=1)))
        again = client.get("/").text
    assert "fs9" in [name for _, name in rows(again)]  # the table is read fresh
    assert rows(again, "late") == [("late", "roads-db")]  # the late list is kept
    assert "<title>drd: 1 late of 3 systems</title>" in again  # so are the counts


def test_login_and_logout_refuse_requests_other_sites_sent(centre: Seeded) -> None:
    with TestClient(centre.app) as client:
        for headers in ({"origin": "https://evil.example"}, {"origin": "null"},
                        {"sec_fetch_site": "cross-site"},
                        {"origin": "http://testserver", "sec_fetch_site": "cross-site"}):
            refused = log_in(client, centre.operator, **headers)
            assert refused.status_code == 403, headers
            assert "refused" in refused.json()["detail"], headers
            assert SESSION_COOKIE not in refused.cookies
        accepted = log_in(client, centre.operator, origin="null",  # no-referrer's
                          sec_fetch_site="same-origin")
        assert accepted.status_code == 303 and SESSION_COOKIE in client.cookies
        refused = client.post("/logout", headers={"Origin": "https://evil.example"},
                              follow_redirects=False)
        assert refused.status_code == 403 and "another origin" in refused.json()["detail"]
        assert client.get("/", follow_redirects=False).status_code == 200  # still logged in
        out = client.post("/logout", headers={"Origin": "http://testserver",
                                              "Sec-Fetch-Site": "same-origin"},
                          follow_redirects=False)
        assert out.status_code == 303 and SESSION_COOKIE not in client.cookies


def test_behind_an_https_proxy_the_cookie_is_secure_and_its_origin_accepted(
        tmp_path: Path, database_url: str, monkeypatch) -> None:
    """A TLS-terminating proxy at public_url: the request arrives over plain HTTP from
    the proxy, the browser's Origin is the public one."""
    monkeypatch.delenv("DRD_MASTER_PASSPHRASE", raising=False)
    centre = seeded_centre(tmp_path, database_url, public_url="https://drd.example.org:8443")
    with TestClient(centre.app) as client:
        accepted = log_in(client, centre.operator, origin="https://drd.example.org:8443")
        assert accepted.status_code == 303
        assert "secure" in accepted.headers["set-cookie"].lower()
        assert log_in(client, centre.operator,
                      origin="http://drd.example.org:8443").status_code == 403


def test_the_html_drill_report_carries_the_dashboards_security_headers(
        centre: Seeded) -> None:
    with TestClient(centre.app) as client:
        log_in(client, centre.operator)
        link = re.search(r'href="(/v1/drills/\d+/report\?format=html)"', client.get("/").text)
        assert link is not None
        report = client.get(link.group(1))
        assert report.status_code == 200, report.text
        assert {key: report.headers[key] for key in SECURITY_HEADERS} == SECURITY_HEADERS
        assert report.headers["content-type"].startswith("text/html")
        # what the CSP allows is all the report uses: inline style and SVG, no script,
        # nothing fetched
        assert "<svg" in report.text and "<style>" in report.text
        assert "<script" not in report.text.lower()
        assert not re.search(r'(src|href)="(?!#)', report.text)
        assert "url(" not in report.text and "@import" not in report.text
        as_json = client.get(link.group(1).replace("html", "json"))
        assert as_json.status_code == 200 and "X-Drd-Signature" in as_json.headers
