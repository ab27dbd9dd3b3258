"""The ``drd`` command line as a user runs it: real processes, real catalog, real S3.

Each test runs ``python -m drd.cli.main`` in a subprocess, so exit codes, stdout/stderr
separation and the environment (``DRD_HOME``, ``AWS_*``) are exercised exactly as a
shell would.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "policies" / "examples").glob("*.yaml"))
REGIONS = {"dc-a": "region-a", "dc-b": "region-a", "region-b": "region-b"}

pytestmark = pytest.mark.integration


def drd(*args: str, home: Path | None = None, env: dict | None = None,
        check: int | None = 0) -> subprocess.CompletedProcess:
    """Run drd; assert its exit status is ``check`` (unless None)."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("AWS_", "DRD_HOME", "DRD_MASTER"))}
    if home is not None:
        environment["DRD_HOME"] = str(home)
    environment.update(env or {})
    result = subprocess.run([sys.executable, "-m", "drd.cli.main", *args], env=environment,
                            capture_output=True, text=True, timeout=120)
    if check is not None:
        assert result.returncode == check, (result.returncode, result.stdout, result.stderr)
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "centre"
    drd("init", home=path)
    return path


def add_file_stores(home: Path, root: Path) -> None:
    for name, region in REGIONS.items():
        drd("store", "add", name, "--url", f"file://{root / name}", "--region", region,
            home=home)


# -- init ---------------------------------------------------------------------------------


def test_init_creates_a_private_home_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    first = drd("init", "--home", str(home), "--json")
    info = json.loads(first.stdout)
    assert info["created"] is True and len(info["ca_fingerprint"]) == 64
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "catalog.sqlite").stat().st_mode) == 0o600
    for key in (home / "keys").glob("*.enc"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not list(home.glob(".init-*"))

    again = json.loads(drd("--home", str(home), "init", "--json").stdout)
    assert again["created"] is False
    assert again["ca_fingerprint"] == info["ca_fingerprint"]


def test_init_on_postgresql_and_sqlite(tmp_path: Path, database_url: str) -> None:
    home = tmp_path / "centre"
    info = json.loads(drd("init", "--database-url", database_url, "--json", home=home).stdout)
    assert info["created"] and info["schema_revision"]
    assert drd("store", "list", "--json", home=home).stdout.strip() == "[]"


def test_init_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    result = drd("init", "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/none",
                 home=home, check=1)
    assert "127.0.0.1:1" in result.stderr
    assert not home.exists()
    drd("init", home=home)  # and a later init works


def test_init_with_a_master_passphrase_needs_it_afterwards(tmp_path: Path) -> None:
    home = tmp_path / "centre"
    secret_env = {"DRD_MASTER_PASSPHRASE": "correct horse battery staple"}
    info = json.loads(drd("init", "--json", home=home, env=secret_env).stdout)
    assert info["master_key"] == "passphrase"
    assert not (home / "keys" / "master.key").exists()
    store_args = ("store", "add", "x", "--url", f"file://{tmp_path / 'x'}", "--region", "r")
    missing = drd(*store_args, home=home, check=2)
    assert "passphrase" in missing.stderr.lower()
    wrong_passphrase = "Tr0ub4dor&3-not-it"
    wrong = drd(*store_args, home=home, env={"DRD_MASTER_PASSPHRASE": wrong_passphrase},
                check=2)
    assert "passphrase" in wrong.stderr and wrong_passphrase not in wrong.stderr
    drd(*store_args, home=home, env=secret_env)


def test_commands_on_an_uninitialised_home_say_to_run_init(tmp_path: Path) -> None:
    result = drd("store", "list", home=tmp_path / "nothing", check=2)
    assert "drd init" in result.stderr


# -- stores -------------------------------------------------------------------------------


def test_file_stores_add_list_check(home: Path, tmp_path: Path) -> None:
    add_file_stores(home, tmp_path / "vault")
    listed = json.loads(drd("store", "list", "--json", home=home).stdout)
    assert [row["name"] for row in listed] == sorted(REGIONS)
    assert {row["name"]: row["region"] for row in listed} == REGIONS
    checked = json.loads(drd("store", "check", "--json", home=home).stdout)
    assert all(row["ok"] for row in checked)
    table = drd("store", "check", "dc-a", home=home).stdout
    assert table.startswith("dc-a: ok")


def test_store_add_refuses_bad_input_with_exit_2(home: Path, tmp_path: Path) -> None:
    bad = [
        ("store", "add", "x", "--url", "ftp://host/path", "--region", "r"),
        ("store", "add", "x", "--url", "s3://Not_A_Bucket/p", "--endpoint", "http://h:1",
         "--region", "r"),
        ("store", "add", "x", "--url", "file://relative/path", "--region", "r"),
        ("store", "add", "Bad Name", "--url", f"file://{tmp_path}/y", "--region", "r"),
        ("store", "add", "x", "--url", f"file://{tmp_path}/y"),  # no region
    ]
    for args in bad:
        result = drd(*args, home=home, check=2)
        assert result.stderr.strip(), args
    drd("store", "add", "x", "--url", f"file://{tmp_path}/y", "--region", "r", home=home)
    duplicate = drd("store", "add", "x", "--url", f"file://{tmp_path}/z", "--region", "r",
                    home=home, check=2)
    assert "exists already" in duplicate.stderr
    assert len(json.loads(drd("store", "list", "--json", home=home).stdout)) == 1


@pytest.mark.slow
def test_s3_store_keys_are_encrypted_and_never_printed(home: Path, seaweed) -> None:
    (server,) = seaweed(1)
    keys = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    added = drd("store", "add", "dc-a", "--url", "s3://drd-test/city", "--endpoint",
                server.endpoint, "--region", "region-a", "--object-lock", "--json",
                home=home, env=keys)
    assert json.loads(added.stdout)["object_lock_active"] is True
    outputs = [added.stdout + added.stderr]
    for args in (("store", "list"), ("store", "list", "--json"), ("store", "check"),
                 ("store", "check", "--json")):
        result = drd(*args, home=home)
        outputs.append(result.stdout + result.stderr)
    assert all(server.secret_key not in text for text in outputs)
    catalog_bytes = (home / "catalog.sqlite").read_bytes()
    assert server.secret_key.encode() not in catalog_bytes
    with sqlite3.connect(home / "catalog.sqlite") as connection:
        (encrypted,) = connection.execute(
            "SELECT secret_encrypted FROM stores WHERE name = 'dc-a'").fetchone()
    assert encrypted and server.secret_key.encode() not in encrypted


@pytest.mark.slow
def test_s3_store_with_a_wrong_secret_or_down_exits_1_naming_store_and_cause(
        home: Path, seaweed, tmp_path: Path) -> None:
    (server,) = seaweed(1)
    secret_file = tmp_path / "secret"
    secret_file.write_text("definitely-not-the-secret\n")
    wrong = drd("store", "add", "dc-a", "--url", "s3://drd-test/city", "--endpoint",
                server.endpoint, "--region", "region-a", "--access-key-id", server.access_key,
                "--secret-access-key-file", str(secret_file), home=home, check=1)
    line = wrong.stderr.strip().splitlines()[-1]
    assert "'dc-a'" in line and ("denied" in line or "signature" in line.lower())
    assert "definitely-not-the-secret" not in wrong.stderr
    assert json.loads(drd("store", "list", "--json", home=home).stdout) == []

    keys = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    drd("store", "add", "dc-a", "--url", "s3://drd-test/city", "--endpoint", server.endpoint,
        "--region", "region-a", home=home, env=keys)
    server.kill()
    down = drd("store", "check", home=home, check=1)
    assert down.stdout.startswith("dc-a: FAILED:")
    assert "reach" in down.stdout


# -- policies -----------------------------------------------------------------------------


def test_examples_validate_without_a_home(tmp_path: Path) -> None:
    result = drd("policy", "validate", *map(str, EXAMPLES), home=tmp_path / "none")
    assert result.stdout.count("is valid") == len(EXAMPLES) >= 2
    assert "not checked" in result.stderr


def test_invalid_policy_reports_file_line_and_field_and_applies_nothing(
        home: Path, tmp_path: Path) -> None:
    add_file_stores(home, tmp_path / "vault")
    bad = tmp_path / "bad.yaml"
    text = EXAMPLES[0].read_text()
    bad.write_text(text.replace("keep_daily: 14", "keep_daily: -1")
                   .replace("min_copies: 2", "min_copies: 2\nsurprise: true"))
    result = drd("policy", "validate", str(bad), home=home, check=2)
    problems = result.stderr
    assert f"{bad}:" in problems and "retention.keep_daily" in problems
    assert "surprise" in problems
    lines = [line for line in problems.splitlines() if line.strip()]
    located = [line for line in lines if re.match(rf"^(drd: error: )?{re.escape(str(bad))}:\d+: ",
                                                  line)]
    assert len(located) >= 2, problems  # each problem names its file and line

    as_json = json.loads(drd("policy", "validate", "--json", str(bad), home=home,
                             check=2).stdout)
    assert as_json["valid"] is False
    assert {p["field"] for p in as_json["problems"]} >= {"retention.keep_daily", "surprise"}
    assert all(isinstance(p["line"], int) for p in as_json["problems"])

    drd("policy", "apply", *map(str, EXAMPLES), str(bad), home=home, check=2)
    assert json.loads(drd("policy", "list", "--json", home=home).stdout) == []


def test_policy_naming_an_unknown_store_or_one_region_is_refused(
        home: Path, tmp_path: Path) -> None:
    drd("store", "add", "dc-a", "--url", f"file://{tmp_path / 'a'}", "--region", "region-a",
        home=home)
    drd("store", "add", "dc-b", "--url", f"file://{tmp_path / 'b'}", "--region", "region-a",
        home=home)
    result = drd("policy", "apply", str(EXAMPLES[0]), home=home, check=2)
    assert "region-b" in result.stderr  # not a registered store
    single = tmp_path / "single.yaml"
    single.write_text(EXAMPLES[0].read_text().replace("[dc-a, dc-b, region-b]",
                                                      "[dc-a, dc-b]"))
    result = drd("policy", "apply", str(single), home=home, check=2)
    assert "region" in result.stderr


def test_apply_is_versioned_and_idempotent(home: Path, tmp_path: Path) -> None:
    add_file_stores(home, tmp_path / "vault")
    # the examples name S3 stores with Object Lock; these are file stores (shared keys)
    (tmp_path / "policies").mkdir()
    examples = [tmp_path / "policies" / example.name for example in EXAMPLES]
    for example, copy in zip(EXAMPLES, examples, strict=True):
        copy.write_text(example.read_text() + "allow_shared_credentials: true\n")
    applied = json.loads(drd("policy", "apply", "--json", *map(str, examples),
                             home=home).stdout)
    assert {item["change"] for item in applied} == {"created"}
    again = json.loads(drd("policy", "apply", "--json", *map(str, examples), home=home).stdout)
    assert {item["change"] for item in again} == {"unchanged"}
    changed = tmp_path / EXAMPLES[0].name
    text = examples[0].read_text()
    changed.write_text(text.replace("\ndescription: ", "\ndescription: Changed. ", 1))
    assert changed.read_text() != text
    updated = json.loads(drd("policy", "apply", "--json", str(changed), home=home).stdout)
    assert updated[0]["change"] == "updated" and updated[0]["version"] == 2
    listed = json.loads(drd("policy", "list", "--json", home=home).stdout)
    assert {row["name"]: row["version"] for row in listed}[updated[0]["policy"]] == 2


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert drd("no-such-command", check=2).returncode == 2
    assert drd("store", "add", home=tmp_path, check=2).returncode == 2
