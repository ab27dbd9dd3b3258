"""``drd drill report`` and ``drd drill verify-report`` on a real home and catalog.

The drill rows are written straight into the catalog, signed with the home's key as a
drill run signs them, so these tests need neither restic nor a store.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from drd.catalog.models import Department, Drill, Store, System
from drd.cli.drill_report import report_command, verify_report_command
from drd.config import load_config
from drd.crypto.keystore import KeyStore
from drd.crypto.signing import public_key_fingerprint
from drd.errors import DrdError
from drd.services.centre import open_catalog, open_master_key
from restore_drills.report import json_export, sign_report
from tests.integration.test_cli import drd
from tests.unit.restore_drills.sample import report

pytestmark = pytest.mark.integration

# the commands as `drd drill` holds them (drd/cli/drill.py registers the same two)
DRILL = click.Group("drill", commands=[report_command, verify_report_command])


def drill(*args: str) -> tuple[int, str, str]:
    """Run ``drd drill ARGS``; return (exit status, stdout, stderr or the error message).

    drd's own errors escape with ``standalone_mode=False`` and map to their exit status,
    as :func:`drd.console.runner.run` maps them.
    """
    result = CliRunner().invoke(DRILL, list(args), standalone_mode=False)
    if isinstance(result.exception, DrdError):
        return result.exception.exit_status, result.stdout, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def centre(tmp_path_factory) -> dict:
    """A home with fs1, two stores, two finished signed drills and one still running."""
    home = tmp_path_factory.mktemp("drill-report") / "centre"
    drd("init", home=home)
    config = load_config(home)
    catalog = open_catalog(config)
    keystore = KeyStore(config.keys_dir, open_master_key(config))
    key = keystore.signing_private_key()
    start = dt.datetime(2026, 11, 27, 19, 0, tzinfo=dt.UTC)
    with catalog.session() as session:
        department = Department(name="finance")
        session.add(department)
        session.flush()
        system = System(name="fs1", department_id=department.id, status="enrolled")
        stores = [Store(name=name, kind="file", url=f"file:///srv/{name}", region=region)
                  for name, region in (("dc-a", "eu-1"), ("region-b", "eu-2"))]
        session.add_all([system, *stores])
        session.flush()
        ids = []
        for days, store, document in ((1, stores[0], report(id=0, store="dc-a", passed=True,
                                                            reasons=[])),
                                      (0, stores[1], report())):
            row = Drill(system_id=system.id, store_id=store.id, snapshot_restic_id="ab" * 32,
                        started_at=start - dt.timedelta(days=days),
                        finished_at=start - dt.timedelta(days=days, seconds=-42),
                        passed=document["passed"], rto_seconds=document["rto_seconds"],
                        rpo_seconds=document["rpo_seconds"])
            session.add(row)
            session.flush()
            row.report = {**document, "id": row.id}
            row.signature = sign_report(key, row.report)
            ids.append(row.id)
        running = Drill(system_id=system.id, store_id=stores[0].id, started_at=start)
        session.add(running)
        session.flush()
        ids.append(running.id)
    yield {"home": home, "catalog": catalog, "passed": ids[0], "failed": ids[1],
           "running": ids[2], "fingerprint": public_key_fingerprint(key.public_key())}
    catalog.dispose()


def test_json_export_is_signed_and_verifies(centre: dict, tmp_path: Path) -> None:
    home, drill_id = str(centre["home"]), str(centre["failed"])
    out = tmp_path / "drill.json"
    out.write_text("an older export")
    status, _, stderr = drill("report", drill_id, "--format", "json", "-o", str(out),
                              "--home", home)
    assert status == 0, stderr
    exported = json.loads(out.read_bytes())
    assert exported["schema"] == 1 and exported["id"] == centre["failed"]
    assert exported["passed"] is False
    status, stdout, _ = drill("verify-report", str(out), "--home", home)
    assert (status, stdout.strip()) == (0, f"OK: signed by {centre['fingerprint']}")
    # an auditor without the centre: the public key file alone, and no home at all
    public_key = centre["home"] / "keys" / "signing.pub.pem"
    status, stdout, _ = drill("verify-report", str(out), "--public-key", str(public_key),
                              "--home", str(tmp_path / "no-home"))
    assert status == 0 and stdout.startswith("OK: signed by")

    out.write_bytes(out.read_bytes().replace(b'"passed": false', b'"passed": true ', 1))
    status, stdout, _ = drill("verify-report", str(out), "--home", home)
    assert status == 1 and stdout.startswith("FAILED:")


def test_html_export_verifies_and_one_changed_byte_fails(centre: dict, tmp_path: Path) -> None:
    home, out = str(centre["home"]), tmp_path / "drill.html"
    status, _, stderr = drill("report", str(centre["failed"]), "-o", str(out), "--home", home)
    assert status == 0, stderr
    page = out.read_text()
    assert "FAILED" in page and "fs1" in page and page.count("<svg") == 2
    assert "drill #" + str(centre["passed"]) + " on dc-a" in page  # the history is charted
    assert drill("verify-report", str(out), "--home", home)[0] == 0
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    out.write_bytes(bytes(data))
    status, stdout, _ = drill("verify-report", str(out), "--home", home)
    assert status == 1 and "does not match its signature" in stdout
    out.with_name("drill.html.sig").unlink()
    status, stdout, _ = drill("verify-report", str(out), "--home", home)
    assert status == 1 and stdout.startswith("FAILED: cannot read")


def test_stdout_export_is_the_same_bytes_and_unsigned(centre: dict) -> None:
    status, stdout, stderr = drill("report", str(centre["passed"]), "--format", "json",
                                   "--home", str(centre["home"]))
    assert status == 0 and "not signed" in stderr
    with centre["catalog"].session() as session:
        stored = session.get(Drill, centre["passed"]).report
    assert stdout.encode() == json_export(stored)


def test_unknown_and_running_drills_are_refused(centre: dict) -> None:
    status, _, message = drill("report", "9999", "--home", str(centre["home"]))
    assert status == 2 and "no drill #9999" in message
    status, _, message = drill("report", str(centre["running"]), "--home", str(centre["home"]))
    assert status == 1 and "still running" in message


def test_a_tampered_catalog_row_is_not_exported(centre: dict, tmp_path: Path) -> None:
    with centre["catalog"].session() as session:
        row = session.get(Drill, centre["passed"])
        original = row.report
        session.execute(sa.update(Drill).where(Drill.id == row.id)
                        .values(report={**original, "rto_seconds": 1.0}))
    try:
        out = tmp_path / "drill.json"
        status, _, message = drill("report", str(centre["passed"]), "-o", str(out),
                                   "--home", str(centre["home"]))
        assert status == 1 and "does not match the signature" in message
        assert not list(tmp_path.iterdir())
    finally:
        with centre["catalog"].session() as session:
            session.execute(sa.update(Drill).where(Drill.id == centre["passed"])
                            .values(report=original))
