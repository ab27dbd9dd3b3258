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

import yaml

from drd.errors import UserError
from drd.fsutil import atomic_write

CONFIG_FILE = "drd.yaml"
KEYS_DIR = "keys"
CATALOG_FILE = "catalog.sqlite"


def default_home() -> Path:
    """The home used when neither ``--home`` nor ``$DRD_HOME`` is given."""
    if os.geteuid() == 0:
        return Path("/var/lib/drd")
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "drd"


def resolve_home(option: str | os.PathLike | None) -> Path:
    """The home directory: the option, else ``$DRD_HOME``, else :func:`default_home`."""
    chosen = option or os.environ.get("DRD_HOME")
    return Path(chosen).expanduser().absolute() if chosen else default_home()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@dataclass
class Config:
    """The daemon's settings. Secrets never live here."""

    home: Path
    database_url: str = ""
    restic_binary: str = "restic"
    listen: str = "127.0.0.1:8443"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.database_url:
            self.database_url = sqlite_url(self.home / CATALOG_FILE)

    @property
    def keys_dir(self) -> Path:
        return self.home / KEYS_DIR

    def to_yaml(self) -> str:
        document = {k: v for k, v in asdict(self).items() if k not in ("home", "extra")}
        document.update(self.extra)
        return yaml.safe_dump(document, sort_keys=False)


_KNOWN = {"database_url", "restic_binary", "listen"}


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
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise UserError(f"{path}: expected a mapping of settings")
    known = {key: str(value) for key, value in document.items() if key in _KNOWN}
    extra = {key: value for key, value in document.items() if key not in _KNOWN}
    return Config(home=home, extra=extra, **known)


def write_config(config: Config, directory: Path | None = None) -> Path:
    """Write the configuration atomically into ``directory`` (default: its home)."""
    path = config_path(directory or config.home)
    atomic_write(path, config.to_yaml(), mode=0o600)
    return path
