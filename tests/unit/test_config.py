"""Where the home is, and what the configuration file holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from drd.config import Config, default_home, load_config, resolve_home, write_config
from drd.errors import UserError


def test_home_comes_from_the_option_then_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DRD_HOME", str(tmp_path / "env"))
    assert resolve_home(str(tmp_path / "opt")) == tmp_path / "opt"
    assert resolve_home(None) == tmp_path / "env"
    monkeypatch.delenv("DRD_HOME")
    assert resolve_home(None) == default_home()


def test_the_default_catalog_is_a_sqlite_file_in_the_home(tmp_path: Path) -> None:
    assert Config(home=tmp_path).database_url == f"sqlite:///{tmp_path}/catalog.sqlite"


def test_config_round_trips(tmp_path: Path) -> None:
    config = Config(home=tmp_path, database_url="postgresql+psycopg://db/drd",
                    restic_binary="/opt/restic")
    path = write_config(config)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_config(tmp_path)
    assert loaded == config


def test_unknown_or_mistyped_settings_are_refused_all_at_once(tmp_path: Path) -> None:
    (tmp_path / "drd.yaml").write_text("databse_url: postgresql://db/drd\nlisten: 8443\n")
    with pytest.raises(UserError) as refused:
        load_config(tmp_path)
    message = str(refused.value)
    assert "databse_url: unknown setting" in message
    assert "listen: must be text" in message


def test_the_daemon_settings_are_whole_numbers_in_range(tmp_path: Path) -> None:
    (tmp_path / "drd.yaml").write_text("workers: 4\nreplication_parallel: 16\n"
                                       "lease_seconds: 60\n")
    loaded = load_config(tmp_path)
    assert (loaded.workers, loaded.replication_parallel, loaded.lease_seconds) == (4, 16, 60)
    (tmp_path / "drd.yaml").write_text("workers: '2'\nreplication_parallel: 0\n"
                                       "lease_seconds: true\n")
    with pytest.raises(UserError) as refused:
        load_config(tmp_path)
    message = str(refused.value)
    assert "workers: must be a whole number from 1 to 64" in message
    assert "replication_parallel: must be a whole number from 1 to 256" in message
    assert "lease_seconds: must be a whole number from 5 to 3600" in message


def test_a_config_repr_masks_a_database_password(tmp_path: Path) -> None:
    config = Config(home=tmp_path, database_url="postgresql+psycopg://drd:pa55word@db/drd")
    assert "pa55word" not in repr(config)


def test_an_uninitialised_or_broken_home_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="drd init"):
        load_config(tmp_path)
    (tmp_path / "drd.yaml").write_text("database_url: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(tmp_path)
    (tmp_path / "drd.yaml").write_text("- a list\n")
    with pytest.raises(UserError, match="mapping"):
        load_config(tmp_path)
    (tmp_path / "drd.yaml").write_bytes(b"listen: \xff\xfe\n")
    with pytest.raises(UserError, match="cannot be read"):
        load_config(tmp_path)
