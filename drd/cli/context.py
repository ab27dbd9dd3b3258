"""What a command needs from its environment, resolved lazily and once.

Commands ask the state for the home, the configuration, the master key or the
catalog; each is opened on first use, so ``drd policy validate`` works without an
initialised home and ``drd store list`` never unlocks keys it does not need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drd.catalog import Catalog
from drd.config import Config, load_config, resolve_home
from drd.crypto.masterkey import MasterKey
from drd.services.centre import open_catalog, open_master_key


@dataclass
class CliState:
    home_option: str | None = None
    # set by ``drd --server URL``: the command calls the centre's API (drd/cli/remote.py)
    remote: Any = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return resolve_home(self.home_option)

    def config(self) -> Config:
        if "config" not in self._cache:
            self._cache["config"] = load_config(self.home)
        return self._cache["config"]

    def catalog(self) -> Catalog:
        if "catalog" not in self._cache:
            self._cache["catalog"] = open_catalog(self.config())
        return self._cache["catalog"]

    def master_key(self) -> MasterKey:
        if "master_key" not in self._cache:
            self._cache["master_key"] = open_master_key(self.config())
        return self._cache["master_key"]
