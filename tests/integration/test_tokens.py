"""``drd token``: people's API tokens on a real catalog (SQLite and PostgreSQL), created
through drd's entry point, resolved to principals, revoked and expired."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from drd.api.app import create_app
from drd.catalog.models import AuditEntry, Department, System, Token
from drd.cli.main import cli
from drd.config import load_config
from drd.console.runner import run
from drd.services import tokens
from drd.services.centre import open_catalog, open_master_key
from drd.services.refusals import NotAuthenticated
from tests.integration.test_cli import drd as drd_process

pytestmark = pytest.mark.integration


class _Result:
    def __init__(self, stdout: str, stderr: str) -> None:
        self.stdout, self.stderr = stdout, stderr


def drd(*args: str, home: Path, check: int = 0) -> _Result:
    """drd's entry point (exit statuses and error lines included) in this process: a
    dozen commands in well under a second."""
    with CliRunner().isolation() as streams:
        try:
            run(cli, "drd", ["--home", str(home), *args])
        except SystemExit as done:
            code = done.code
        stdout, stderr = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    assert code == check, (code, stdout, stderr)
    return _Result(stdout, stderr)


def test_tokens_are_shown_once_kept_as_hashes_scoped_and_revoked(tmp_path: Path,
                                                                database_url: str) -> None:
    home = tmp_path / "centre"
    drd_process("init", "--database-url", database_url, home=home)
    catalog = open_catalog(load_config(home))
    with catalog.session() as session:
        parks = Department(name="parks")
        session.add(parks)
        session.flush()
        session.add(System(name="fs1", department_id=parks.id, status="enrolled"))

    created = drd("token", "create", "--role", "operator", "--name", "night-shift",
                  "--expires", "30d", home=home)
    operator = created.stdout.strip()
    assert len(operator) >= 40 and "\n" not in operator  # the token alone on stdout
    assert "night-shift" in created.stderr and operator not in created.stderr
    owner = drd("token", "create", "--role", "owner", "--department", "parks",
                home=home).stdout.strip()

    first_owner = owner
    principal = tokens.authenticate(catalog, operator)
    assert (principal.name, principal.role, principal.actor) == (
        "night-shift", "operator", "token:night-shift")
    assert principal.may_read("finance", "ledger") and not principal.may_change
    parks_owner = tokens.authenticate(catalog, f"  {owner}\n")
    assert parks_owner.name == "owner-1" and parks_owner.departments == ("parks",)
    assert parks_owner.may_read("parks", "fs1") and not parks_owner.may_read("finance", "x")

    # the API: GET /v1/whoami with each token, none, and an agent-less garbage one
    config = load_config(home)
    with TestClient(create_app(catalog, open_master_key(config), config)) as client:
        def whoami(token: str | None):
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            return client.get("/v1/whoami", headers=headers)

        assert whoami(operator).json() == {
            "name": "night-shift", "role": "operator", "departments": [], "systems": [],
            "reads_everything": True, "may_change": False}
        assert whoami(owner).json()["departments"] == ["parks"]
        for refused in (None, "", "not-a-token"):
            response = whoami(refused)
            assert response.status_code == 401, response.text
            assert operator not in response.text
        drd("token", "revoke", "owner-1", home=home)
        assert whoami(owner).status_code == 401 and "revoked" in whoami(owner).text
    owner = drd("token", "create", "--role", "owner", "--department", "parks",
                "--name", "owner-1b", home=home).stdout.strip()

    listed = json.loads(drd("token", "list", "--json", home=home).stdout)
    assert [(entry["name"], entry["role"], entry["state"]) for entry in listed] == [
        ("night-shift", "operator", "valid"), ("owner-1b", "owner", "valid")]
    assert listed[0]["expires_at"] is not None and listed[1]["expires_at"] is None

    # refused: scopes that make no sense, unknown names, a taken name
    for args, message in [
        (("--role", "owner"), "needs --department D or --system S"),
        (("--role", "operator", "--system", "fs1"), "reads every system"),
        (("--role", "owner", "--department", "nowhere"), "no department named 'nowhere'"),
        (("--role", "owner", "--system", "ghost"), "no system named 'ghost'"),
        (("--role", "admin", "--name", "night-shift"), "exists already"),
        (("--role", "admin", "--expires", "soon"), "--expires"),
    ]:
        refused = drd("token", "create", *args, home=home, check=2)
        assert message in refused.stderr, (args, refused.stderr)

    drd("token", "revoke", "night-shift", home=home)
    with pytest.raises(NotAuthenticated, match="revoked"):
        tokens.authenticate(catalog, operator)
    assert [entry["name"] for entry in json.loads(
        drd("token", "list", "--json", home=home).stdout)] == ["owner-1b"]
    assert "revoked" in drd("token", "list", "--all", home=home).stdout
    assert "no token named 'nobody'" in drd("token", "revoke", "nobody", home=home,
                                            check=2).stderr
    with pytest.raises(NotAuthenticated, match="no credential"):
        tokens.authenticate(catalog, " ")
    with pytest.raises(NotAuthenticated, match="unknown token"):
        tokens.authenticate(catalog, "not-a-token")

    # an expired token no longer authenticates
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    stale = tokens.create_token(catalog, role="admin", name="old",
                                expires_in=dt.timedelta(days=1), now=past)
    with pytest.raises(NotAuthenticated, match="expired"):
        tokens.authenticate(catalog, stale.token.reveal())

    # the catalog holds hashes only; the audit log names tokens, never their values
    with catalog.session() as session:
        values = [operator, owner, first_owner, stale.token.reveal()]
        kept = " ".join(str(row) for row in session.execute(sa.select(Token.__table__)))
        entries = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action.like("token.%"))).all()
        trail = " ".join(f"{entry.target} {entry.details}" for entry in entries)
    assert not any(value in kept or value in trail for value in values)
    assert [entry.action for entry in entries].count("token.create") == 4
    assert [entry.action for entry in entries].count("token.revoke") == 2
    catalog.dispose()
