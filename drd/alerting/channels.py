"""Alert channels: what a webhook or a mail says about an alert, and sending it.

The messages are built by pure functions (:func:`webhook_request`, :func:`email_message`,
:func:`subject`); :func:`send` is the one choke point that talks to a channel. It reads
the channel's secret when it sends, always with a timeout, and raises
:class:`DeliveryError` when the message did not arrive: ``permanent`` when trying again
cannot help (a webhook answering 4xx other than 408/429, an SMTP server refusing a
recipient with a 5xx), else it is worth retrying with backoff. Of a webhook URL only
``scheme://host[:port]`` is ever shown (:func:`url_origin`): Slack's and Teams' URLs
carry their secret in the path.

Webhook signature: ``X-Drd-Signature: sha256=HEX`` where HEX is the HMAC-SHA256, keyed
with the channel secret, of ``TIMESTAMP.BODY`` -- the ``X-Drd-Timestamp`` header (Unix
seconds), a dot, and the raw request body -- so a receiver can refuse old replays.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import smtplib
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from concurrent.futures import Future, wait
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from drd.alerting.settings import Channel, EmailChannel, SecretSource, WebhookChannel
from drd.errors import OperationError
from drd.secrets import Secret, mask

USER_AGENT = "drd-alerts/1"
MAX_SUBJECT = 200
RETRIED_HTTP_STATUSES = frozenset({408, 429})
# a send's connect, request and answer each wait at most the channel's timeout; a server
# answering a byte at a time cannot stretch the whole send past this many timeouts
OVERALL_TIMEOUTS = 3


class DeliveryError(OperationError):
    """A message that did not reach its channel. ``permanent``: do not try again."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class AlertMessage:
    """What one notification says: the event and the alert's facts (no secret in them)."""

    delivery: int
    event: str
    alert_id: int
    kind: str
    severity: str
    system: str | None
    store: str | None
    message: str
    opened_at: dt.datetime
    last_seen_at: dt.datetime
    resolved_at: dt.datetime | None
    count: int
    details: Mapping[str, Any]
    centre_url: str = ""

    def as_dict(self) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {"event": self.event, "delivery": self.delivery, "alert_id": self.alert_id,
                "kind": self.kind, "severity": self.severity, "system": self.system,
                "store": self.store, "message": self.message,
                "opened_at": when(self.opened_at), "last_seen_at": when(self.last_seen_at),
                "resolved_at": when(self.resolved_at), "count": self.count,
                "details": dict(self.details), "centre": self.centre_url or None}


# -- pure: the messages -------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=HEX``: the HMAC-SHA256 of ``TIMESTAMP.BODY`` keyed with ``secret``."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body,
                      hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_request(message: AlertMessage, secret: Secret | None,
                    now: dt.datetime) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the webhook POST for ``message``; signed when ``secret``."""
    body = json.dumps(message.as_dict(), sort_keys=True, separators=(",", ":")).encode()
    timestamp = int(now.timestamp())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Drd-Event": message.event, "X-Drd-Delivery": str(message.delivery),
               "X-Drd-Timestamp": str(timestamp)}
    if secret:
        headers["X-Drd-Signature"] = signature(secret.reveal(), timestamp, body)
    return body, headers


def _thing(message: AlertMessage) -> str:
    return "/".join(part for part in (message.system, message.store) if part) or "centre"


def subject(message: AlertMessage) -> str:
    """``[drd] CRITICAL rpo_breached fs1: ...``; ``RESOLVED`` for a resolve notice and
    ``(still open)`` for a repeat. One line, at most 200 characters."""
    label = "RESOLVED" if message.event == "resolved" else message.severity.upper()
    still = " (still open)" if message.event == "repeated" else ""
    text = f"[drd] {label}{still} {message.kind} {_thing(message)}: {message.message}"
    text = " ".join(text.split())
    return text if len(text) <= MAX_SUBJECT else text[:MAX_SUBJECT - 3] + "..."


def email_text(message: AlertMessage) -> str:
    """The plain-text body: the same facts as the webhook's JSON."""
    state = {"opened": "opened", "repeated": "still open",
             "resolved": "resolved"}[message.event]
    lines = [f"Alert {message.alert_id} {state}: {message.message}", "",
             f"kind:       {message.kind}",
             f"severity:   {message.severity}",
             f"system:     {message.system or '-'}",
             f"store:      {message.store or '-'}",
             f"opened:     {message.opened_at.isoformat()}",
             f"last seen:  {message.last_seen_at.isoformat()}",
             f"resolved:   {message.resolved_at.isoformat() if message.resolved_at else '-'}",
             f"times seen: {message.count}"]
    lines += [f"{key}: {value}" for key, value in sorted(message.details.items())]
    if message.centre_url:
        lines += ["", f"centre: {message.centre_url}"]
    lines += ["", f"(drd notification {message.delivery}, event {message.event})"]
    return "\n".join(lines) + "\n"


def email_message(channel: EmailChannel, message: AlertMessage,
                  now: dt.datetime) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = subject(message)
    mail["From"] = channel.sender
    mail["To"] = ", ".join(channel.recipients)
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = make_msgid(domain=channel.sender.rpartition("@")[2] or None)
    mail["X-Drd-Event"] = message.event
    mail["X-Drd-Delivery"] = str(message.delivery)
    mail.set_content(email_text(message))
    return mail


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: all of a webhook URL that may be shown (in
    errors, logs, ``last_error``): Slack's and Teams' carry their secret in the path."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(a malformed URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def without_url_secrets(text: str, url: str) -> str:
    """``text`` with ``url`` shown as its origin, and any other spelling of its path,
    query or user information masked."""
    text = text.replace(url, url_origin(url))
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return mask(text, [url])
    tail = url.split(parts.netloc, 1)[1] if parts.netloc else url
    secrets = [tail, parts.path, parts.query, parts.password]
    secrets += [urllib.parse.unquote(value) for value in secrets if value]
    return mask(text, [value for value in secrets if value and value != "/"])


def is_permanent_http_status(status: int) -> bool:
    """Whether a webhook's HTTP answer means "never mind retrying": 3xx (drd does not
    follow a redirect with the alert) and 4xx other than 408 and 429."""
    return 300 <= status < 500 and status not in RETRIED_HTTP_STATUSES


# -- effects: sending ---------------------------------------------------------------------


def read_secret(source: SecretSource, environ: Mapping[str, str] | None = None) -> Secret:
    """The secret at ``source``. Raises :class:`DeliveryError` (not permanent: it may be
    put right without a restart) naming where, never what."""
    if source.file:
        try:
            text = Path(source.file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            raise DeliveryError(f"cannot read the secret file {source.file}: "
                                f"{getattr(error, 'strerror', None) or error}") from None
    else:
        text = (os.environ if environ is None else environ).get(source.env or "", "")
    if not text:
        raise DeliveryError(f"the secret ({source.describe()}) is empty or not set")
    return Secret(text)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # an alert is not re-posted elsewhere
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def send_webhook(channel: WebhookChannel, message: AlertMessage, now: dt.datetime) -> None:
    """POST ``message`` to the channel; return when it answered 2xx."""
    secret = read_secret(channel.secret) if channel.secret else None
    body, headers = webhook_request(message, secret, now)
    request = urllib.request.Request(channel.url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=channel.timeout.total_seconds()) as response:
            response.read(65536)
    except urllib.error.HTTPError as error:
        permanent = is_permanent_http_status(error.code)
        reason = without_url_secrets(f"{error.reason}", channel.url)
        raise DeliveryError(f"{url_origin(channel.url)} answered {error.code} {reason}",
                            permanent=permanent) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, TimeoutError):
            reason = f"no answer within {channel.timeout.total_seconds():g}s"
        reason = without_url_secrets(f"{reason}", channel.url)
        raise DeliveryError(f"cannot reach {url_origin(channel.url)}: {reason}") from None


def send_email(channel: EmailChannel, message: AlertMessage, now: dt.datetime) -> None:
    """Mail ``message`` through the channel's SMTP server."""
    password = read_secret(channel.password) if channel.password else None
    mail = email_message(channel, message, now)
    timeout = channel.timeout.total_seconds()
    try:
        if channel.ssl:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(channel.smtp_host, channel.smtp_port,
                                                  timeout=timeout,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout)
        with smtp:
            if channel.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if channel.username and password is not None:
                smtp.login(channel.username, password.reveal())
            smtp.send_message(mail)
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        raise DeliveryError(f"{channel.smtp_host} refused the recipients "
                            f"({', '.join(sorted(error.recipients))})",
                            permanent=all(code >= 500 for code in codes)) from None
    except smtplib.SMTPResponseException as error:
        text = error.smtp_error.decode(errors="replace") if isinstance(
            error.smtp_error, bytes) else str(error.smtp_error)
        raise DeliveryError(f"{channel.smtp_host} answered {error.smtp_code} {text}",
                            permanent=error.smtp_code >= 500) from None
    except (smtplib.SMTPException, OSError) as error:
        reason = (f"no answer within {timeout:g}s" if isinstance(error, TimeoutError)
                  else str(error) or type(error).__name__)
        raise DeliveryError(f"cannot mail through {channel.smtp_host}:{channel.smtp_port}: "
                            f"{reason}") from None


def send(channel: Channel, message: AlertMessage, now: dt.datetime) -> None:
    """Deliver ``message`` on ``channel`` within :data:`OVERALL_TIMEOUTS` times its
    timeout. Raises :class:`DeliveryError`.

    The send runs in a daemon thread the caller stops waiting for at that bound: every
    socket operation has the channel's timeout, but a name lookup (DNS) has none, and a
    server may answer a byte at a time. A send given up on may still arrive later
    (delivery is at least once).
    """
    bound = channel.timeout.total_seconds() * OVERALL_TIMEOUTS
    outcome: Future = Future()

    def attempt() -> None:
        try:
            if isinstance(channel, WebhookChannel):
                send_webhook(channel, message, now)
            else:
                send_email(channel, message, now)
        except BaseException as error:  # noqa: BLE001 - handed to the waiting caller
            outcome.set_exception(error)
        else:
            outcome.set_result(None)

    threading.Thread(target=attempt, name="alert-send", daemon=True).start()
    if not wait([outcome], timeout=bound).done:
        where = (url_origin(channel.url) if isinstance(channel, WebhookChannel)
                 else f"{channel.smtp_host}:{channel.smtp_port}")
        raise DeliveryError(f"{where}: no complete answer within {bound:g}s")
    outcome.result()
