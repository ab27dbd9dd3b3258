"""Where ``drd-agent enroll`` takes its token from: a file, stdin, or (with a warning)
the command line, where every user of the machine can read it (``ps``, ``/proc``).

The enrollment itself is replaced by a stand-in that records the token it was given
(test_agent_centre.py enrolls for real, with ``--token-file``); ``drd --server``'s own
``--token`` warning is checked beside it, so that the two say the same thing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import agents.cli
from agents.enroll import EnrollmentResult
from drd.cli.main import main as drd_main

pytestmark = pytest.mark.integration

TOKEN = "drd-enroll-1.eyJzZXJ2ZXIiOiAiaHR0cHM6Ly9jZW50cmUifQ"
SERVER = "https://centre.example:8443"


@pytest.fixture
def given(monkeypatch, tmp_path: Path) -> list[str]:
    """The tokens the stand-in enrollment was given."""
    tokens: list[str] = []

    def enroll(home, server, token_text, **options) -> EnrollmentResult:
        tokens.append(token_text)
        return EnrollmentResult(system="fs1", department="parks", server=server,
                                home=home.root, stores=["dc-a"], repository="created",
                                resumed=False)

    monkeypatch.setattr(agents.cli, "enroll", enroll)
    monkeypatch.setenv("DRD_AGENT_HOME", str(tmp_path / "agent"))
    return tokens


class Ran:
    """What a console script did in this process: exit status, stdout, stderr."""

    def __init__(self, main, argv: list[str], stdin: str | None = None) -> None:
        with CliRunner().isolation(input=stdin) as streams:
            try:
                main(argv)
            except SystemExit as done:
                self.exit_code = done.code
            self.stdout = streams[0].getvalue().decode()
            self.stderr = streams[1].getvalue().decode()


def _enroll(*args: str, stdin: str | None = None) -> Ran:
    return Ran(agents.cli.main, ["enroll", "--server", SERVER, "--json", *args], stdin)


def test_a_token_file_or_stdin_and_no_warning(given: list[str], tmp_path: Path) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    from_file = _enroll("--token-file", str(token_file))
    assert from_file.exit_code == 0, from_file.stderr
    assert json.loads(from_file.stdout)["system"] == "fs1" and from_file.stderr == ""
    from_stdin = _enroll("--token", "-", stdin=TOKEN + "\n")
    assert from_stdin.exit_code == 0 and from_stdin.stderr == ""
    assert [token.strip() for token in given] == [TOKEN, TOKEN]


def test_a_token_on_the_command_line_still_works_but_warns(given: list[str]) -> None:
    result = _enroll("--token", TOKEN)
    assert result.exit_code == 0 and given == [TOKEN]
    assert result.stderr == (
        "drd-agent: warning: --token on the command line is visible to other users of "
        "this machine (ps); prefer --token-file FILE or --token - (stdin)\n")
    assert TOKEN not in result.stderr


def test_one_source_of_the_token_exactly(given: list[str], tmp_path: Path) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN)
    for args in ((), ("--token", "-", "--token-file", str(token_file))):
        result = _enroll(*args)
        assert result.exit_code == 2 and "--token-file FILE or --token -" in result.stderr
    missing = _enroll("--token-file", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "--token-file: cannot read" in missing.stderr
    assert given == []
    help_text = Ran(agents.cli.main, ["enroll", "--help"]).stdout
    assert "--token-file FILE" in help_text and "visible to other users in ps" in help_text


def test_drd_server_mode_warns_about_a_token_on_the_command_line_too(tmp_path: Path) -> None:
    common = ["--server", "https://127.0.0.1:1", "--ca-fingerprint", "a" * 64]
    on_argv = Ran(drd_main, [*common, "--token", "owner-token", "status"])
    assert on_argv.stderr.startswith(
        "drd: warning: --token on the command line is visible to other users of this "
        "machine (ps); prefer $DRD_TOKEN or --token-file FILE\n"), on_argv.stderr
    token_file = tmp_path / "token"
    token_file.write_text("owner-token\n")
    from_file = Ran(drd_main, [*common, "--token-file", str(token_file), "status"])
    assert "warning" not in from_file.stderr and from_file.exit_code == on_argv.exit_code == 1
