"""Alert channels end to end on a real catalog (SQLite and PostgreSQL): a real HTTP server
on 127.0.0.1 receives the webhooks, a real SMTP server (aiosmtpd) the mail, a closed port
plays a channel that is down, and a daemon's job raises an alert while its webhook hangs."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from drd.alerting.channels import DeliveryError, read_secret
from drd.alerting.notifier import deliver_due, enqueue, send_test
from drd.alerting.settings import SecretSource, alert_settings
from drd.catalog import Catalog, migrate
from drd.catalog.models import Alert, AlertNotification, Department, Job, JobRun, System
from drd.catalog.types import utcnow
from drd.config import Config, load_config
from drd.daemon import queue
from drd.daemon.service import Daemon
from drd.daemon.workers import JobResult
from drd.errors import UserError
from drd.services.alerts import raise_alert, resolve_alert

pytestmark = pytest.mark.integration

SECRET = "s3cret-webhook-key"
T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    migrate(database_url)
    catalog = Catalog(database_url)
    with catalog.session() as session:
        parks = Department(name="parks")
        session.add(parks)
        session.flush()
        session.add(System(name="fs1", department_id=parks.id, status="enrolled"))
    yield catalog
    catalog.dispose()


class Hook:
    """A webhook receiver: answers each POST with the next of ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int] | None = None, hang: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hang:
                    time.sleep(hang)
                hook.received.append((dict(self.headers), body))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/drd"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[tuple[int, str]]:
        return [(json.loads(body)["alert_id"], json.loads(body)["event"])
                for _, body in self.received]


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def secret_file(tmp_path: Path) -> str:
    path = tmp_path / "webhook.secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return str(path)


def _raise(catalog: Catalog, kind: str, now: dt.datetime, subject: str = "") -> int:
    with catalog.session() as session:
        system_id = session.scalar(sa.select(System.id))
        return raise_alert(session, kind, f"{kind} on fs1", system_id=system_id,
                           subject=subject, details={"hours": 30}, now=now).id


def _rows(catalog: Catalog) -> list[AlertNotification]:
    with catalog.session() as session:
        return list(session.scalars(sa.select(AlertNotification)
                                    .order_by(AlertNotification.id)))


def test_webhook_is_signed_retried_after_a_500_repeated_and_resolved(
        catalog: Catalog, hook: Hook, tmp_path: Path) -> None:
    settings = alert_settings({"repeat_interval": "4h", "channels": [
        {"name": "ops-hook", "type": "webhook", "url": hook.url,
         "secret_file": secret_file(tmp_path), "timeout": "5s", "attempts": 3}]},
        centre_url="https://dr.example:8443")
    hook.statuses = [500]
    alert_id = _raise(catalog, "rpo_breached", T0)

    assert [(p.alert_id, p.event) for p in enqueue(catalog, settings, T0)] == [
        (alert_id, "opened")]
    assert enqueue(catalog, settings, T0 + dt.timedelta(minutes=1)) == []  # nothing twice
    assert deliver_due(catalog, settings, T0) == {"sent": 0, "retry": 1, "failed": 0}
    (row,) = _rows(catalog)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == T0 + dt.timedelta(seconds=30)
    assert "500" in row.last_error
    assert deliver_due(catalog, settings, T0 + dt.timedelta(seconds=10))["retry"] == 0
    assert deliver_due(catalog, settings, T0 + dt.timedelta(seconds=30))["sent"] == 1
    (row,) = _rows(catalog)
    assert (row.state, row.attempts, row.sent_at) == \
        ("sent", 2, T0 + dt.timedelta(seconds=30))

    headers, body = hook.received[-1]
    document = json.loads(body)
    assert (document["alert_id"], document["event"], document["kind"]) == \
        (alert_id, "opened", "rpo_breached")
    assert (document["system"], document["store"], document["severity"]) == \
        ("fs1", None, "critical")
    assert document["centre"] == "https://dr.example:8443"
    assert document["message"] == "rpo_breached on fs1" and document["count"] == 1
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Drd-Event"] == "opened" and headers["X-Drd-Delivery"] == str(row.id)
    expected = hmac.new(SECRET.encode(), headers["X-Drd-Timestamp"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Drd-Signature"], f"sha256={expected}")

    # still open after the repeat interval: told again, once
    later = T0 + dt.timedelta(hours=4, seconds=30)
    assert [p.event for p in enqueue(catalog, settings, later)] == ["repeated"]
    assert enqueue(catalog, settings, later + dt.timedelta(hours=1)) == []
    deliver_due(catalog, settings, later)
    # resolved: one notice, then nothing more however often the notifier passes
    with catalog.session() as session:
        system_id = session.scalar(sa.select(System.id))
        resolve_alert(session, "rpo_breached", system_id=system_id, now=later)
    end = later + dt.timedelta(minutes=1)
    assert [p.event for p in enqueue(catalog, settings, end)] == ["resolved"]
    assert enqueue(catalog, settings, end + dt.timedelta(hours=9)) == []
    deliver_due(catalog, settings, end)
    assert hook.events() == [(alert_id, "opened"), (alert_id, "opened"),
                             (alert_id, "repeated"), (alert_id, "resolved")]
    assert json.loads(hook.received[-1][1])["resolved_at"] is not None
    assert all(row.state == "sent" for row in _rows(catalog))

    # a test notice, outside the outbox
    send_test(settings, "ops-hook", end)
    assert json.loads(hook.received[-1][1])["kind"] == "test"
    with pytest.raises(UserError, match="ops-hook"):
        send_test(settings, "nope", end)


def test_a_channel_down_backs_off_then_fails_while_the_others_are_delivered(
        catalog: Catalog, hook: Hook) -> None:
    port = closed_port()
    dead_url = f"http://127.0.0.1:{port}/services/T0001/B0002/xoxb-path-secret"
    settings = alert_settings({"channels": [
        {"name": "dead", "type": "webhook", "url": dead_url, "attempts": 2},
        {"name": "live", "type": "webhook", "url": hook.url},
        {"name": "gone", "type": "webhook", "url": hook.url, "attempts": 1}]})
    first = _raise(catalog, "backup_failed", T0, subject="a")
    second = _raise(catalog, "store_down", T0, subject="b")
    assert len(enqueue(catalog, settings, T0)) == 6

    started = time.monotonic()
    counts = deliver_due(catalog, settings, T0)
    assert time.monotonic() - started < 5
    # the dead channel was tried once this pass (its other message waits), the others
    # were all delivered
    assert counts == {"sent": 4, "retry": 1, "failed": 0}
    assert sorted(hook.events()) == [(first, "opened"), (first, "opened"),
                                     (second, "opened"), (second, "opened")]
    dead = [row for row in _rows(catalog) if row.channel == "dead"]
    assert [(row.state, row.attempts) for row in dead] == [("pending", 1), ("pending", 0)]
    assert dead[0].next_attempt_at == T0 + dt.timedelta(seconds=30)
    assert dead[0].last_error.startswith(f"cannot reach http://127.0.0.1:{port}: ")
    assert "path-secret" not in dead[0].last_error and "T0001" not in dead[0].last_error

    # one try of the dead channel per pass; the second attempt is the last: failed,
    # with a one-line reason
    for minutes in (0.5, 2, 4):
        deliver_due(catalog, settings, T0 + dt.timedelta(minutes=minutes))
    dead = [row for row in _rows(catalog) if row.channel == "dead"]
    assert [(row.state, row.attempts) for row in dead] == [("failed", 2), ("failed", 2)]
    assert all("\n" not in row.last_error for row in dead)

    # a channel removed from the configuration: its pending messages fail, named
    with catalog.session() as session:
        session.add(AlertNotification(alert_id=first, channel="removed", event="opened",
                                      state="pending", created_at=T0, next_attempt_at=T0,
                                      attempts=0))
    deliver_due(catalog, settings, T0 + dt.timedelta(minutes=5))
    (removed,) = [row for row in _rows(catalog) if row.channel == "removed"]
    assert removed.state == "failed" and "'removed'" in removed.last_error


def test_a_4xx_gives_up_at_once_and_two_daemons_send_each_message_once(
        catalog: Catalog, hook: Hook) -> None:
    settings = alert_settings({"channels": [{"name": "hook", "type": "webhook",
                                             "url": hook.url}]})
    hook.statuses = [404]
    _raise(catalog, "damage", T0)
    enqueue(catalog, settings, T0)
    assert deliver_due(catalog, settings, T0)["failed"] == 1
    (row,) = _rows(catalog)
    assert (row.state, row.attempts) == ("failed", 1) and "404" in row.last_error

    for index in range(6):
        _raise(catalog, "damage", T0, subject=str(index))
    results: list[dict[str, int]] = []

    def daemon() -> None:
        enqueue(catalog, settings, T0)
        results.append(deliver_due(catalog, settings, T0))

    threads = [threading.Thread(target=daemon) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sum(result["sent"] for result in results) == 6
    assert len(hook.received) == 7  # the 404 and six messages, none twice
    assert len(_rows(catalog)) == 7


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                              envelope.original_content or envelope.content))
        return "250 OK"


def test_email_arrives_through_a_real_smtp_server_then_waits_while_it_is_down(
        catalog: Catalog) -> None:
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=closed_port())
    controller.start()
    try:
        settings = alert_settings({"channels": [
            {"name": "ops-mail", "type": "email", "smtp_host": "127.0.0.1",
             "smtp_port": controller.port, "starttls": False, "from": "drd@example.org",
             "to": ["ops@example.org", "dba@example.org"]}]})
        alert_id = _raise(catalog, "rpo_breached", T0)
        enqueue(catalog, settings, T0)
        assert deliver_due(catalog, settings, T0)["sent"] == 1
    finally:
        controller.stop()
    ((sender, recipients, content),) = inbox.messages
    assert sender == "drd@example.org"
    assert recipients == ["ops@example.org", "dba@example.org"]
    text = content.decode()
    assert "Subject: [drd] CRITICAL rpo_breached fs1: rpo_breached on fs1" in text
    assert f"Alert {alert_id} opened: rpo_breached on fs1" in text
    assert "hours: 30" in text

    # the SMTP server gone: retried later
    _raise(catalog, "store_down", T0)
    enqueue(catalog, settings, T0)
    assert deliver_due(catalog, settings, T0)["retry"] == 1
    row = _rows(catalog)[-1]
    assert row.state == "pending" and row.last_error.startswith("cannot mail through")


def test_a_job_raising_an_alert_while_the_webhook_hangs_finishes_at_once(
        tmp_path: Path, database_url: str, catalog: Catalog, monkeypatch) -> None:
    monkeypatch.setattr("drd.daemon.notify.NOTIFY_SECONDS", 0.2)
    hanging = Hook(hang=3.0)
    config = Config(home=tmp_path, database_url=database_url, alerts={"channels": [
        {"name": "slow", "type": "webhook", "url": hanging.url, "timeout": "1s"}]})
    ran = threading.Event()

    def handler(context) -> JobResult:
        with context.catalog.session() as session:
            raise_alert(session, "backup_failed", "fs1's backup failed", subject="hang")
        ran.set()
        return JobResult("succeeded")

    with catalog.session() as session:
        job = Job(name="alerting:test", kind="alerting-test", next_run_at=utcnow())
        session.add(job)
        session.flush()
        queue.enqueue(session, job, "manual")
    daemon = Daemon(config, catalog, None, None, workers=1, schedule=False,
                    handlers={"alerting-test": handler})
    started = time.monotonic()
    daemon.start()
    try:
        assert ran.wait(10)
        while True:
            with catalog.session() as session:
                run = session.scalar(sa.select(JobRun))
                if run is not None and run.outcome is not None:
                    break
            assert time.monotonic() - started < 10
            time.sleep(0.05)
        assert run.outcome == "succeeded"
        assert run.finished_at - run.started_at < dt.timedelta(seconds=1)
        # the notifier tried the hanging channel (and gave it its timeout only)
        while not any(row.attempts for row in _rows(catalog)):
            assert time.monotonic() - started < 15
            time.sleep(0.1)
    finally:
        daemon.stop(timeout=3)
        hanging.close()
    assert time.monotonic() - started < 12
    (row,) = _rows(catalog)
    assert row.channel == "slow" and row.state == "pending"
    with catalog.session() as session:
        assert session.scalar(sa.select(Alert.notified_at)) is not None


def test_a_webhook_answering_a_byte_at_a_time_is_given_up_within_its_bound() -> None:
    from drd.alerting.channels import OVERALL_TIMEOUTS, AlertMessage, send

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:  # each byte well within the socket timeout, never done
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 1000:
                if stop.wait(0.3):
                    return
                connection.sendall(bytes([byte]))

    threading.Thread(target=trickle, daemon=True).start()
    port = listener.getsockname()[1]
    settings = alert_settings({"channels": [
        {"name": "slow", "type": "webhook", "timeout": "1s",
         "url": f"http://127.0.0.1:{port}/services/T1/B2/secret-path"}]})
    message = AlertMessage(delivery=1, event="opened", alert_id=1, kind="test",
                           severity="info", system=None, store=None, message="m",
                           opened_at=T0, last_seen_at=T0, resolved_at=None, count=1,
                           details={})
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError) as slow:
            send(settings.channels[0], message, T0)
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - started < OVERALL_TIMEOUTS + 1
    assert str(slow.value) == (f"http://127.0.0.1:{port}: no complete answer within "
                               f"{OVERALL_TIMEOUTS}s")


def test_config_errors_name_the_file_and_the_path(tmp_path: Path) -> None:
    (tmp_path / "drd.yaml").write_text(
        "alerts:\n  repeat_interval: 4h\n  channels:\n"
        "    - {name: hook, type: webhook, url: 'ftp://x', secret: inline}\n"
        "    - {name: mail, type: email, smtp_host: m, from: a@b, to: [c@d], port: 25}\n"
        "workers: 0\n")
    with pytest.raises(UserError) as refused:
        load_config(tmp_path)
    lines = str(refused.value).splitlines()
    path = tmp_path / "drd.yaml"
    assert f"{path}: alerts.channels[0].url: must be an https:// (or http://) URL" in lines
    assert any(line.startswith(f"{path}: alerts.channels[0].secret: unknown setting")
               for line in lines)
    assert any(line.startswith(f"{path}: alerts.channels[1].port: unknown setting")
               for line in lines)
    assert any(line.startswith(f"{path}: workers:") for line in lines)
    assert "inline" not in str(refused.value)

    (tmp_path / "drd.yaml").write_text(
        "alerts:\n  channels:\n    - {name: hook, type: webhook, url: 'https://h/x',"
        " secret_env: DRD_HOOK_SECRET}\n  rules: {replication_lag_objects: 10}\n")
    loaded = load_config(tmp_path)
    assert loaded.alerts["channels"][0]["name"] == "hook"
    assert loaded.alerts["rules"] == {"replication_lag_objects": 10}
    assert "alerts:" not in Config(home=tmp_path).to_yaml()


def test_secrets_are_read_when_sending_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("rotated-secret-value\n")
    assert read_secret(SecretSource(file=str(path))).reveal() == "rotated-secret-value"
    assert read_secret(SecretSource(env="HOOK_KEY"), {"HOOK_KEY": "from-env"}).reveal() \
        == "from-env"
    with pytest.raises(DeliveryError, match=f"cannot read the secret file {tmp_path}/gone"):
        read_secret(SecretSource(file=str(tmp_path / "gone")))
    with pytest.raises(DeliveryError, match="environment variable HOOK_KEY") as empty:
        read_secret(SecretSource(env="HOOK_KEY"), {})
    assert not empty.value.permanent


def test_drd_alerts_test_channel(tmp_path: Path, hook: Hook) -> None:
    from tests.integration.test_tokens import drd

    (tmp_path / "drd.yaml").write_text(
        f"alerts:\n  channels:\n    - {{name: hook, type: webhook, url: '{hook.url}'}}\n"
        f"    - {{name: dead, type: webhook, url: 'http://127.0.0.1:{closed_port()}/hooks/"
        "T1/sekrit-token', timeout: 1s}\n")
    assert "delivered to hook" in drd("alerts", "test-channel", "hook", home=tmp_path).stdout
    assert json.loads(hook.received[-1][1])["kind"] == "test"
    refused = drd("alerts", "test-channel", "dead", home=tmp_path, check=1).stderr
    assert "cannot reach http://127.0.0.1:" in refused and "sekrit" not in refused
    assert "no alert channel 'x'" in drd("alerts", "test-channel", "x", home=tmp_path,
                                         check=2).stderr
