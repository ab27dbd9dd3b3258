"""Command tuples, argv and environment: pure, and never carrying a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from drd.errors import UserError
from drd.restic.commands import (
    backup_command,
    cat_config_command,
    check_command,
    forget_command,
    init_command,
    restic_argv,
    restic_environment,
    restore_command,
    snapshots_command,
    version_command,
)
from drd.restic.types import KeepRules, Repository
from drd.secrets import Secret

FULL_ID = "0d75d4202c7c41e2637dcc8ddf696e430e53a6884aed1a751bcd339a0d19e41a"
PASSWORD = "correct horse battery staple"
AWS_SECRET = "aws-secret-key-value"


def test_version_and_init_and_cat_config():
    assert version_command() == ("version",)
    assert init_command() == ("init", "--json")
    assert cat_config_command() == ("cat", "config", "--json")


def test_backup_of_paths_puts_paths_after_double_dash():
    assert backup_command(["/srv/share", Path("/etc")], ["*.tmp", "cache/"], ["daily", "fs"],
                          "web-1") == (
        "backup", "--json", "--exclude", "*.tmp", "--exclude", "cache/",
        "--tag", "daily", "--tag", "fs", "--host", "web-1", "--", "/srv/share", "/etc",
    )


def test_backup_path_starting_with_dash_is_not_an_option():
    assert backup_command(["-rf"])[-2:] == ("--", "-rf")


def test_backup_of_stdin():
    assert backup_command(tags=["db"], stdin_filename="app.sql") == (
        "backup", "--json", "--stdin", "--stdin-filename", "app.sql", "--tag", "db",
    )


@pytest.mark.parametrize(
    "arguments",
    [
        {},                                                   # nothing to back up
        {"paths": ["/a"], "stdin_filename": "x.sql"},         # both
        {"stdin_filename": "dir/x.sql"},                      # a path, not a name
        {"stdin_filename": ""},
        {"paths": [""]},
        {"paths": ["/a"], "tags": ["a,b"]},                   # restic would make two tags
        {"paths": ["/a"], "tags": [""]},
        {"paths": ["/a"], "excludes": [""]},
        {"paths": ["/a"], "host": ""},
    ],
)
def test_backup_refuses_what_restic_would_misread(arguments):
    with pytest.raises(UserError):
        backup_command(**arguments)


def test_snapshots_filters():
    assert snapshots_command() == ("snapshots", "--json")
    assert snapshots_command(["a", "b"], "h", ["/srv"], ["0d75d420"]) == (
        "snapshots", "--json", "--tag", "a,b", "--host", "h", "--path", "/srv",
        "--", "0d75d420",
    )
    with pytest.raises(UserError):
        snapshots_command(snapshot_ids=["--all"])


def test_restore():
    assert restore_command(FULL_ID, Path("/tmp/t")) == (
        "restore", "--json", "--target", "/tmp/t", "--", FULL_ID,
    )
    assert restore_command("latest", "/t", ["/srv/share/a"], verify=True) == (
        "restore", "--json", "--target", "/t", "--include", "/srv/share/a", "--verify",
        "--", "latest",
    )
    for bad_id in ("LATEST", "xyz", "", "-v"):
        with pytest.raises(UserError):
            restore_command(bad_id, "/t")
    with pytest.raises(UserError):
        restore_command("latest", "")


def test_check():
    assert check_command() == ("check", "--json")
    assert check_command(read_data=True) == ("check", "--json", "--read-data")
    assert check_command(read_data_subset="1/5") == (
        "check", "--json", "--read-data-subset=1/5",
    )
    with pytest.raises(UserError):
        check_command(read_data=True, read_data_subset="10%")
    with pytest.raises(UserError):
        check_command(read_data_subset=" ")


def test_forget_by_ids_and_by_rules():
    assert forget_command([FULL_ID]) == ("forget", "--json", "--", FULL_ID)
    assert forget_command([FULL_ID], prune=True) == ("forget", "--json", "--prune", "--", FULL_ID)
    assert forget_command(keep=KeepRules(last=7, daily=14, yearly=0)) == (
        "forget", "--json", "--keep-last", "7", "--keep-daily", "14", "--keep-yearly", "0",
    )


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"keep": KeepRules()},
        {"snapshot_ids": [FULL_ID], "keep": KeepRules(last=1)},
        {"keep": KeepRules(last=-1)},
        {"snapshot_ids": ["latest"]},
    ],
)
def test_forget_refuses_ambiguous_or_empty_requests(arguments):
    with pytest.raises(UserError):
        forget_command(**arguments)


def _repository() -> Repository:
    return Repository(
        url=Secret("s3:http://127.0.0.1:9000/bucket/prefix"),
        password=Secret(PASSWORD),
        env={"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": Secret(AWS_SECRET)},
    )


def test_argv_names_the_password_pipe_not_the_password():
    argv = restic_argv("/usr/bin/restic", snapshots_command(), password_fd=7,
                       cache_dir=Path("/var/cache/drd"))
    assert argv == ("/usr/bin/restic", "--password-file", "/dev/fd/7",
                    "--cache-dir", "/var/cache/drd", "snapshots", "--json")
    joined = " ".join(argv)
    assert PASSWORD not in joined
    assert "127.0.0.1:9000" not in joined
    assert restic_argv("restic", version_command()) == ("restic", "version")


def test_environment_carries_repository_and_keys_but_no_password():
    parent = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "RESTIC_PASSWORD": "leaked",
        "RESTIC_PASSWORD_FILE": "/leaked",
        "RESTIC_PASSWORD_COMMAND": "echo leaked",
        "RESTIC_REPOSITORY_FILE": "/leaked",
        "AWS_SECRET_ACCESS_KEY": "parent-secret",
        "AWS_PROFILE": "other",
        "RESTIC_CACHE_DIR": "/cache",
        "DRD_MASTER_PASSPHRASE": "the centre's master passphrase",
    }
    environment = restic_environment(parent, _repository())
    assert environment == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "RESTIC_CACHE_DIR": "/cache",
        "RESTIC_REPOSITORY": "s3:http://127.0.0.1:9000/bucket/prefix",
        "AWS_ACCESS_KEY_ID": "AKID",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    }
    assert PASSWORD not in environment.values()


def test_environment_without_repository_only_cleans():
    assert restic_environment({"PATH": "/bin", "RESTIC_PASSWORD": "x"}, None) == {"PATH": "/bin"}
