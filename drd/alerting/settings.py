"""The ``alerts:`` section of the centre's ``drd.yaml``: channels and the repeat interval.

:func:`check_alert_settings` returns every problem at once, each with its path
(``alerts.channels[1].url: must start with https:// or http://``);
:func:`alert_settings` builds :class:`AlertSettings` from a section that passed. Both are
pure: no file is read here. Secrets are never in the file: a channel names where its
secret is (``secret_file``/``secret_env`` for a webhook's signing key,
``password_file``/``password_env`` for an SMTP password) and the notifier reads it when it
sends (so a rotated secret needs no restart).

``rules`` belongs to the alert rules (:mod:`drd.alerting.rules`) and is passed through as a
mapping.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policies import parse_duration

DEFAULT_REPEAT_INTERVAL = dt.timedelta(hours=4)
DEFAULT_TIMEOUT = dt.timedelta(seconds=10)
MAX_TIMEOUT = dt.timedelta(seconds=60)
DEFAULT_ATTEMPTS = 5
MAX_ATTEMPTS = 20
CHANNEL_TYPES = ("webhook", "email")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")
_SECTION_KEYS = {"repeat_interval", "channels", "rules"}
_COMMON_KEYS = {"name", "type", "timeout", "attempts"}
_WEBHOOK_KEYS = _COMMON_KEYS | {"url", "secret_file", "secret_env"}
_EMAIL_KEYS = _COMMON_KEYS | {"smtp_host", "smtp_port", "starttls", "ssl", "username",
                              "password_file", "password_env", "from", "to"}


@dataclass(frozen=True)
class SecretSource:
    """Where a channel's secret is: a file (its content, a trailing newline removed) or an
    environment variable. Holds no secret itself."""

    file: str | None = None
    env: str | None = None

    def describe(self) -> str:
        return f"file {self.file}" if self.file else f"environment variable {self.env}"


@dataclass(frozen=True)
class WebhookChannel:
    """A JSON POST to ``url``, signed with the secret when one is given."""

    name: str
    url: str = field(repr=False)  # its path may be a secret (Slack, Teams)
    secret: SecretSource | None = None
    timeout: dt.timedelta = DEFAULT_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS
    type: str = "webhook"


@dataclass(frozen=True)
class EmailChannel:
    """A plain-text mail through ``smtp_host``: STARTTLS (default), SSL, or neither
    (``starttls: false``, for a local relay)."""

    name: str
    smtp_host: str
    sender: str
    recipients: tuple[str, ...]
    smtp_port: int = 587
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: SecretSource | None = None
    timeout: dt.timedelta = DEFAULT_TIMEOUT
    attempts: int = DEFAULT_ATTEMPTS
    type: str = "email"


Channel = WebhookChannel | EmailChannel


@dataclass(frozen=True)
class AlertSettings:
    """Channels by name, how often an open alert is told again (None: never), the rules'
    own section, and the centre's URL for messages (``public_url``)."""

    channels: tuple[Channel, ...] = ()
    repeat_interval: dt.timedelta | None = DEFAULT_REPEAT_INTERVAL
    rules: Mapping[str, Any] = field(default_factory=dict)
    centre_url: str = ""

    def channel(self, name: str) -> Channel | None:
        return next((channel for channel in self.channels if channel.name == name), None)


# -- validation ---------------------------------------------------------------------------


def _duration_problem(value: Any, path: str, low: dt.timedelta,
                      high: dt.timedelta | None) -> str | None:
    try:
        duration = parse_duration(value)
    except ValueError as error:
        return f"{path}: {error}"
    if duration < low or (high is not None and duration > high):
        bound = f"from {low.total_seconds():g}s to {high.total_seconds():g}s" if high else \
            f"at least {low.total_seconds():g}s"
        return f"{path}: must be {bound}"
    return None


def _secret_problems(item: Mapping[str, Any], path: str, file_key: str,
                     env_key: str) -> list[str]:
    problems = []
    if file_key in item and item[file_key] is not None and (
            not isinstance(item[file_key], str) or not item[file_key].startswith("/")):
        problems.append(f"{path}.{file_key}: must be an absolute path to a file holding "
                        "the secret (mode 0600 advised)")
    if env_key in item and item[env_key] is not None and (
            not isinstance(item[env_key], str) or not _ENV_NAME.fullmatch(item[env_key])):
        problems.append(f"{path}.{env_key}: must be the name of an environment variable")
    if item.get(file_key) and item.get(env_key):
        problems.append(f"{path}: give {file_key} or {env_key}, not both")
    return problems


def _channel_problems(item: Any, path: str) -> list[str]:
    if not isinstance(item, Mapping):
        return [f"{path}: must be a mapping with name, type and the channel's settings"]
    problems = []
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"{path}.name: must be a name of letters, digits, '.', '_' or '-'")
    kind = item.get("type")
    if kind not in CHANNEL_TYPES:
        problems.append(f"{path}.type: must be one of {', '.join(CHANNEL_TYPES)}")
        return problems
    known = _WEBHOOK_KEYS if kind == "webhook" else _EMAIL_KEYS
    problems += [f"{path}.{key}: unknown setting for a {kind} channel (known: "
                 f"{', '.join(sorted(known))})" for key in item if key not in known]
    if "timeout" in item:
        problem = _duration_problem(item["timeout"], f"{path}.timeout",
                                    dt.timedelta(seconds=1), MAX_TIMEOUT)
        problems += [problem] if problem else []
    attempts = item.get("attempts", DEFAULT_ATTEMPTS)
    if isinstance(attempts, bool) or not isinstance(attempts, int) \
            or not 1 <= attempts <= MAX_ATTEMPTS:
        problems.append(f"{path}.attempts: must be a whole number from 1 to {MAX_ATTEMPTS}")
    if kind == "webhook":
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")) \
                or any(character.isspace() for character in url):
            problems.append(f"{path}.url: must be an https:// (or http://) URL")
        problems += _secret_problems(item, path, "secret_file", "secret_env")
        return problems
    if not isinstance(item.get("smtp_host"), str) or not item.get("smtp_host"):
        problems.append(f"{path}.smtp_host: must be the SMTP server's host name")
    port = item.get("smtp_port", 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append(f"{path}.smtp_port: must be a port number from 1 to 65535")
    for key in ("starttls", "ssl"):
        if key in item and not isinstance(item[key], bool):
            problems.append(f"{path}.{key}: must be true or false")
    if item.get("starttls") is True and item.get("ssl") is True:
        problems.append(f"{path}: ssl and starttls exclude each other (ssl: true turns "
                        "starttls off)")
    sender = item.get("from")
    if not isinstance(sender, str) or not _ADDRESS.fullmatch(sender):
        problems.append(f"{path}.from: must be one mail address")
    recipients = item.get("to")
    if isinstance(recipients, str):
        recipients = [recipients]
    if not isinstance(recipients, list) or not recipients or not all(
            isinstance(address, str) and _ADDRESS.fullmatch(address)
            for address in recipients):
        problems.append(f"{path}.to: must be a mail address or a list of them")
    username = item.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        problems.append(f"{path}.username: must be text")
    problems += _secret_problems(item, path, "password_file", "password_env")
    has_password = bool(item.get("password_file") or item.get("password_env"))
    if username and not has_password:
        problems.append(f"{path}: username needs password_file or password_env")
    if has_password and not username:
        problems.append(f"{path}: a password needs a username")
    return problems


def check_alert_settings(section: Any, where: str = "alerts") -> list[str]:
    """Every problem of an ``alerts:`` section, each as ``PATH: what is wrong``; empty
    when it is valid. Pure: secret files are not looked at."""
    if section is None:
        return []
    if not isinstance(section, Mapping):
        return [f"{where}: must be a mapping (repeat_interval, channels, rules)"]
    problems = [f"{where}.{key}: unknown setting (known: {', '.join(sorted(_SECTION_KEYS))})"
                for key in section if key not in _SECTION_KEYS]
    if "repeat_interval" in section and section["repeat_interval"] is not None:
        problem = _duration_problem(section["repeat_interval"], f"{where}.repeat_interval",
                                    dt.timedelta(0), None)
        problems += [problem] if problem else []
    if "rules" in section and section["rules"] is not None \
            and not isinstance(section["rules"], Mapping):
        problems.append(f"{where}.rules: must be a mapping")
    channels = section.get("channels")
    if channels is None:
        return problems
    if not isinstance(channels, list):
        return problems + [f"{where}.channels: must be a list of channels"]
    seen: set[str] = set()
    for index, item in enumerate(channels):
        path = f"{where}.channels[{index}]"
        problems += _channel_problems(item, path)
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{path}.name: {name!r} names two channels")
            seen.add(name)
    return problems


# -- building -----------------------------------------------------------------------------


def _secret(item: Mapping[str, Any], file_key: str, env_key: str) -> SecretSource | None:
    if item.get(file_key) or item.get(env_key):
        return SecretSource(file=item.get(file_key) or None, env=item.get(env_key) or None)
    return None


def _channel(item: Mapping[str, Any]) -> Channel:
    timeout = parse_duration(item["timeout"]) if "timeout" in item else DEFAULT_TIMEOUT
    attempts = item.get("attempts", DEFAULT_ATTEMPTS)
    if item["type"] == "webhook":
        return WebhookChannel(name=item["name"], url=item["url"],
                              secret=_secret(item, "secret_file", "secret_env"),
                              timeout=timeout, attempts=attempts)
    recipients = item["to"]
    ssl = bool(item.get("ssl", False))
    return EmailChannel(name=item["name"], smtp_host=item["smtp_host"], sender=item["from"],
                        recipients=tuple([recipients] if isinstance(recipients, str)
                                         else recipients),
                        smtp_port=item.get("smtp_port", 587),
                        starttls=bool(item.get("starttls", not ssl)) and not ssl, ssl=ssl,
                        username=item.get("username"),
                        password=_secret(item, "password_file", "password_env"),
                        timeout=timeout, attempts=attempts)


def alert_settings(section: Mapping[str, Any] | None, centre_url: str = "") -> AlertSettings:
    """The settings of a section :func:`check_alert_settings` found valid.

    Raises ``ValueError`` listing the problems when it is not.
    """
    problems = check_alert_settings(section)
    if problems:
        raise ValueError("\n".join(problems))
    section = section or {}
    interval = section.get("repeat_interval")
    repeat = parse_duration(interval) if interval is not None else DEFAULT_REPEAT_INTERVAL
    return AlertSettings(
        channels=tuple(_channel(item) for item in section.get("channels") or ()),
        repeat_interval=repeat or None,
        rules=dict(section.get("rules") or {}),
        centre_url=centre_url)
