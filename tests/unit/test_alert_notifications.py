"""Alert channels' pure decisions: what to queue, when to retry, what the messages say,
and which ``alerts:`` sections are refused."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass

import pytest

from drd.alerting.channels import (
    AlertMessage,
    DeliveryError,
    email_message,
    is_permanent_http_status,
    subject,
    url_origin,
    webhook_request,
    without_url_secrets,
)
from drd.alerting.notifier import PlannedNotification, after_attempt, plan_notifications
from drd.alerting.settings import (
    DEFAULT_REPEAT_INTERVAL,
    EmailChannel,
    WebhookChannel,
    alert_settings,
    check_alert_settings,
)
from drd.secrets import Secret

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@dataclass
class A:
    id: int
    resolved_at: dt.datetime | None = None
    notified_at: dt.datetime | None = None


def plan(alerts, sent=(), now=NOW, repeat=4 * HOUR, channels=("hook", "mail")):
    return plan_notifications(alerts, list(channels), set(sent), now, repeat)


def test_an_open_alert_never_told_is_opened_on_every_channel() -> None:
    assert plan([A(1)]) == [PlannedNotification(1, "hook", "opened"),
                            PlannedNotification(1, "mail", "opened")]
    # a channel added later hears of it too, the one told already does not
    assert plan([A(1, notified_at=NOW)], sent={(1, "hook", "opened")}) == [
        PlannedNotification(1, "mail", "opened")]


def test_an_open_alert_is_repeated_after_the_interval_only() -> None:
    told = {(1, "hook", "opened")}
    fresh = A(1, notified_at=NOW - 4 * HOUR + dt.timedelta(seconds=1))
    assert plan([fresh], told, channels=("hook",)) == []
    stale = A(1, notified_at=NOW - 4 * HOUR)
    assert plan([stale], told, channels=("hook",)) == [
        PlannedNotification(1, "hook", "repeated")]
    assert plan([stale], told, channels=("hook",), repeat=None) == []  # repeats off
    again = told | {(1, "hook", "repeated")}
    assert plan([A(1, notified_at=NOW - 5 * HOUR)], again, channels=("hook",)) == [
        PlannedNotification(1, "hook", "repeated")]


def test_a_resolved_alert_is_resolved_once_on_the_channels_told() -> None:
    resolved = A(1, resolved_at=NOW, notified_at=NOW - HOUR)
    told = {(1, "hook", "opened"), (1, "mail", "opened"), (1, "mail", "repeated")}
    assert plan([resolved], told) == [PlannedNotification(1, "hook", "resolved"),
                                      PlannedNotification(1, "mail", "resolved")]
    # nothing twice
    done = told | {(1, "hook", "resolved"), (1, "mail", "resolved")}
    assert plan([resolved], done) == []
    # a channel never told of it is not told it is over; nor is anyone of an alert
    # opened and resolved between two passes
    assert plan([resolved], {(1, "hook", "opened")}) == [
        PlannedNotification(1, "hook", "resolved")]
    assert plan([A(2, resolved_at=NOW)]) == []


def test_no_channels_plan_nothing() -> None:
    assert plan([A(1), A(2, resolved_at=NOW)], channels=()) == []


def test_attempts_retry_with_backoff_then_fail_and_permanent_refusals_fail_at_once() -> None:
    assert after_attempt(1, 5, None, NOW).state == "sent"
    first = after_attempt(1, 5, DeliveryError("cannot reach x: refused"), NOW)
    second = after_attempt(2, 5, DeliveryError("cannot reach x"), NOW)
    assert first.state == second.state == "pending"
    assert first.next_attempt_at - NOW == dt.timedelta(seconds=30)
    assert second.next_attempt_at - NOW == dt.timedelta(seconds=60)
    assert after_attempt(12, 20, DeliveryError("x"), NOW).next_attempt_at - NOW == \
        dt.timedelta(minutes=30)
    last = after_attempt(5, 5, DeliveryError("cannot reach\nhttps://u:pw12345@h/x"), NOW)
    assert last.state == "failed" and "\n" not in last.error and "pw12345" not in last.error
    assert after_attempt(1, 5, DeliveryError("404", permanent=True), NOW).state == "failed"
    assert [is_permanent_http_status(code) for code in (301, 400, 404, 408, 429, 500, 503)] \
        == [True, True, True, False, False, False, False]


MESSAGE = AlertMessage(delivery=7, event="opened", alert_id=3, kind="rpo_breached",
                       severity="critical", system="fs1", store=None,
                       message="last good snapshot 30h old (RPO 24h)", opened_at=NOW,
                       last_seen_at=NOW, resolved_at=None, count=2,
                       details={"rpo_seconds": 86400},
                       centre_url="https://dr.example:8443")


def test_the_webhook_body_carries_the_facts_and_its_signature_verifies() -> None:
    body, headers = webhook_request(MESSAGE, Secret("hook-secret"), NOW)
    document = json.loads(body)
    assert document["alert_id"] == 3 and document["event"] == "opened"
    assert (document["kind"], document["system"], document["count"]) == \
        ("rpo_breached", "fs1", 2)
    assert document["centre"] == "https://dr.example:8443"
    assert headers["X-Drd-Event"] == "opened" and headers["X-Drd-Delivery"] == "7"
    assert headers["Content-Type"] == "application/json"
    timestamp = headers["X-Drd-Timestamp"]
    expected = hmac.new(b"hook-secret", timestamp.encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    assert headers["X-Drd-Signature"] == f"sha256={expected}"
    _, unsigned = webhook_request(MESSAGE, None, NOW)
    assert "X-Drd-Signature" not in unsigned


def test_the_mail_subject_and_body() -> None:
    assert subject(MESSAGE) == \
        "[drd] CRITICAL rpo_breached fs1: last good snapshot 30h old (RPO 24h)"
    from dataclasses import replace
    assert subject(replace(MESSAGE, event="resolved", store="dc-a")).startswith(
        "[drd] RESOLVED rpo_breached fs1/dc-a: ")
    assert subject(replace(MESSAGE, event="repeated", message="x\ny" * 200)).startswith(
        "[drd] CRITICAL (still open) rpo_breached fs1: x y")
    assert len(subject(replace(MESSAGE, message="z" * 500))) == 200
    channel = EmailChannel(name="m", smtp_host="mail", sender="drd@example",
                           recipients=("ops@example", "dba@example"))
    mail = email_message(channel, MESSAGE, NOW)
    assert mail["To"] == "ops@example, dba@example" and mail["From"] == "drd@example"
    text = mail.get_content()
    assert "rpo_breached" in text and "fs1" in text and "rpo_seconds: 86400" in text


def test_valid_settings_build_channels() -> None:
    settings = alert_settings({
        "repeat_interval": "2h",
        "channels": [
            {"name": "ops-hook", "type": "webhook", "url": "https://hooks.example/drd",
             "secret_file": "/etc/drd/webhook.secret", "timeout": "5s", "attempts": 3},
            {"name": "ops-mail", "type": "email", "smtp_host": "mail.example",
             "username": "drd", "password_env": "DRD_SMTP_PASSWORD",
             "from": "drd@example", "to": "ops@example"},
            {"name": "local", "type": "email", "smtp_host": "localhost", "smtp_port": 25,
             "starttls": False, "from": "drd@example", "to": ["a@example"]}],
        "rules": {"replication_lag_objects": 1000}}, centre_url="https://c")
    hook, mail, local = settings.channels
    assert isinstance(hook, WebhookChannel) and hook.timeout == dt.timedelta(seconds=5)
    assert hook.secret.file == "/etc/drd/webhook.secret" and hook.attempts == 3
    assert mail.starttls and mail.smtp_port == 587 and mail.recipients == ("ops@example",)
    assert mail.password.env == "DRD_SMTP_PASSWORD" and not local.starttls
    assert settings.repeat_interval == 2 * HOUR and settings.rules == {
        "replication_lag_objects": 1000}
    assert settings.channel("local") is local and settings.channel("nope") is None
    assert alert_settings(None).repeat_interval == DEFAULT_REPEAT_INTERVAL
    assert alert_settings({"repeat_interval": "0s"}).repeat_interval is None


def test_every_problem_is_reported_with_its_path() -> None:
    problems = check_alert_settings({
        "repeat_interval": "soon", "colour": "red",
        "channels": [
            {"name": "hook", "type": "webhook", "url": "ftp://x", "secret": "inline!",
             "timeout": "5m", "attempts": 0},
            {"name": "hook", "type": "email", "smtp_host": "", "smtp_port": 70000,
             "from": "nobody", "to": [], "username": "drd", "starttls": True,
             "ssl": True, "password_file": "relative/path"},
            {"name": "x", "type": "pager"}, "just text"]})
    text = "\n".join(problems)
    for expected in ("alerts.repeat_interval: 'soon' is not",
                     "alerts.colour: unknown setting",
                     "alerts.channels[0].url: must be an https://",
                     "alerts.channels[0].secret: unknown setting",
                     "alerts.channels[0].timeout: must be from 1s to 60s",
                     "alerts.channels[0].attempts: must be a whole number",
                     "alerts.channels[1].name: 'hook' names two channels",
                     "alerts.channels[1].smtp_host:", "alerts.channels[1].smtp_port:",
                     "alerts.channels[1].from:", "alerts.channels[1].to:",
                     "alerts.channels[1]: ssl and starttls exclude each other",
                     "alerts.channels[1].password_file: must be an absolute path",
                     "alerts.channels[2].type: must be one of webhook, email",
                     "alerts.channels[3]: must be a mapping"):
        assert expected in text, expected
    assert "inline!" not in text
    assert check_alert_settings({"channels": [{"name": "m", "type": "email",
                                               "smtp_host": "h", "from": "a@b", "to": "c@d",
                                               "username": "u"}]}) == [
        "alerts.channels[0]: username needs password_file or password_env"]
    assert check_alert_settings([1]) == [
        "alerts: must be a mapping (repeat_interval, channels, rules)"]
    with pytest.raises(ValueError, match="alerts.channels"):
        alert_settings({"channels": "hook"})


def test_only_the_origin_of_a_webhook_url_is_ever_shown() -> None:
    slack = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
    assert url_origin(slack) == "https://hooks.slack.com"
    assert url_origin("http://u:pw12@[::1]:8080/x?token=abcd") == "http://[::1]:8080"
    assert url_origin("https://h:99999/x") == "(a malformed URL)"
    said = without_url_secrets(f"unknown url {slack} or /services/T000/B000/XXXXsecretXXXX"
                               " or services%2FT000", slack)
    assert said.startswith("unknown url https://hooks.slack.com or ")
    assert "XXXXsecretXXXX" not in said
    assert "XXXXsecret" not in without_url_secrets("q token=XXXXsecret",
                                                   "https://h/x?token=XXXXsecret")
    assert "hooks.slack.com" not in repr(WebhookChannel(name="slack", url=slack))
    assert "XXXX" not in repr(WebhookChannel(name="slack", url=slack))
