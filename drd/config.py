"""Where drd keeps its state, and the small configuration file in it.

The home directory (``--home``, else ``$DRD_HOME``, else ``/var/lib/drd`` for root or
``$XDG_DATA_HOME/drd`` for a user) holds::

    drd.yaml          this configuration (no secrets)
    keys/             master key, escrow/signing keys, CA (see drd.crypto.keystore)
    catalog.sqlite    the embedded catalog, unless database_url names PostgreSQL
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drd.alerting.settings import check_alert_settings
from drd.errors import UserError
from drd.fsutil import atomic_write
from drd.secrets import mask

CONFIG_FILE = "drd.yaml"
KEYS_DIR = "keys"
CATALOG_FILE = "catalog.sqlite"


def default_home(name: str = "drd") -> Path:
    """The home used when no option or variable names one: ``/var/lib/NAME`` for root,
    else ``$XDG_DATA_HOME/NAME`` (``~/.local/share/NAME``)."""
    if os.geteuid() == 0:
        return Path("/var/lib") / name
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / name


def resolve_home(option: str | os.PathLike | None, variable: str = "DRD_HOME",
                 name: str = "drd") -> Path:
    """The home directory: the option, else ``$variable``, else :func:`default_home`.

    The agent calls it with ``DRD_AGENT_HOME`` and ``drd-agent``.
    """
    chosen = option or os.environ.get(variable)
    return Path(chosen).expanduser().absolute() if chosen else default_home(name)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@dataclass
class Config:
    """The daemon's settings. Secrets never live here: a database password belongs in
    libpq's password file (``~/.pgpass`` or ``$PGPASSFILE``), not in ``database_url``."""

    home: Path
    database_url: str = ""
    restic_binary: str = "restic"
    listen: str = "127.0.0.1:8443"
    public_url: str = ""
    workers: int = 2
    replication_parallel: int = 8
    lease_seconds: int = 30
    catalog_copy_minutes: int = 60
    credential_rotation_days: int = 90
    alerts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.alerts = self.alerts or {}
        if not self.database_url:
            self.database_url = sqlite_url(self.home / CATALOG_FILE)

    def __repr__(self) -> str:
        return (f"Config(home={str(self.home)!r}, database_url={mask(self.database_url)!r}, "
                f"restic_binary={self.restic_binary!r}, listen={self.listen!r}, "
                f"public_url={self.public_url!r}, workers={self.workers}, "
                f"replication_parallel={self.replication_parallel}, "
                f"lease_seconds={self.lease_seconds})")

    @property
    def keys_dir(self) -> Path:
        return self.home / KEYS_DIR

    def to_yaml(self) -> str:
        document = {k: v for k, v in asdict(self).items()
                    if k != "home" and not (k == "alerts" and not v)}
        return yaml.safe_dump(document, sort_keys=False)


_TEXT = {"database_url", "restic_binary", "listen", "public_url"}
_COUNTS = {"workers": (1, 64), "replication_parallel": (1, 256), "lease_seconds": (5, 3600),
           "catalog_copy_minutes": (5, 10080), "credential_rotation_days": (0, 3650)}
_KNOWN = _TEXT | set(_COUNTS) | {"alerts"}
_DESCRIPTIONS = {
    "database_url": "the catalog (sqlite:///FILE or postgresql+psycopg://USER@HOST/DB)",
    "restic_binary": "the restic to run (a path, or a name looked up on PATH)",
    "listen": "HOST:PORT of the API",
    "public_url": "the URL agents reach the API at (https://HOST:PORT), put in enrollment "
                  "tokens; default https://<listen>",
    "workers": "how many queued jobs this daemon runs at once (default 2)",
    "replication_parallel": "how many objects replication copies at once (default 8)",
    "lease_seconds": "how long a daemon's claim on a job lasts without a heartbeat; "
                     "another daemon resumes the job after that (default 30)",
    "catalog_copy_minutes": "how often the leader writes a copy of the catalog into every "
                            "store, at the latest (default 60; see docs/recovery.md)",
    "credential_rotation_days": "how often each system's own store keys are replaced by new "
                                "ones (the old disabled once the agent uses the new); 0: "
                                "never (default 90; see docs/administrators.md)",
    "alerts": "alert rules and channels (webhook, email): see docs/alerts.md",
}


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE


def is_initialised(home: Path) -> bool:
    return config_path(home).is_file()


def load_config(home: Path) -> Config:
    """Read ``home/drd.yaml``.

    Raises :class:`UserError` when the home is not initialised or the file is invalid.
    """
    path = config_path(home)
    if not path.is_file():
        raise UserError(f"{home} is not a drd home: run 'drd init --home {home}' first")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot be read: {error}") from None
    if not isinstance(document, dict):
        raise UserError(f"{path}: expected a mapping of settings")
    problems = [f"{path}: {key}: unknown setting (known: {', '.join(sorted(_KNOWN))})"
                for key in document if key not in _KNOWN]
    problems += [f"{path}: {key}: must be text ({_DESCRIPTIONS[key]})"
                 for key, value in document.items()
                 if key in _TEXT and not isinstance(value, str)]
    for key, (low, high) in _COUNTS.items():
        value = document.get(key)
        if key in document and (isinstance(value, bool) or not isinstance(value, int)
                                or not low <= value <= high):
            problems.append(f"{path}: {key}: must be a whole number from {low} to {high} "
                            f"({_DESCRIPTIONS[key]})")
    public_url = document.get("public_url")
    if isinstance(public_url, str) and public_url and not public_url.startswith(
            ("https://", "http://")):
        problems.append(f"{path}: public_url: must start with https:// "
                        f"({_DESCRIPTIONS['public_url']})")
    problems += [f"{path}: {problem}" for problem in check_alert_settings(
        document.get("alerts"), "alerts")]
    if problems:
        raise UserError("\n".join(problems))
    return Config(home=home, **document)


def write_config(config: Config, directory: Path | None = None) -> Path:
    """Write the configuration atomically into ``directory`` (default: its home)."""
    path = config_path(directory or config.home)
    atomic_write(path, config.to_yaml(), mode=0o600)
    return path
