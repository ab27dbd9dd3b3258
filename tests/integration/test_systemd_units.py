"""The shipped systemd units: ``systemd-analyze verify`` finds nothing to say about them,
their sandbox is the one docs/install.md describes, and ``systemd-analyze security``
rates their exposure low.

verify needs each ExecStart binary to exist, so the test verifies copies of the shipped
files in which only the install path (/opt/drd/venv/bin) is replaced by this venv's; the
rest of each file is verified byte for byte. systemd-analyze works offline on unit files,
without systemd as PID 1 (as in a container); a machine without it skips these tests
with the reason, and CI (CI=true) fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from drd.api.server import parse_listen
from drd.config import Config
from drd.crypto.masterkey import CREDENTIAL_NAME
from tests.conftest import need

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
INSTALL_DOC = REPO / "docs" / "install.md"
INSTALLED_BIN = "/opt/drd/venv/bin/"
VENV_BIN = Path(sys.executable).parent
# The highest overall exposure `systemd-analyze security` may give (0 best, 10 worst);
# docs/install.md quotes the levels systemd 252 (Debian 12) gives.
MAX_EXPOSURE = {"drd.service": 1.5, "drd-agent.service": 2.0}

pytestmark = pytest.mark.integration


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each key with every value it is given, in order (a unit
    may repeat a key, e.g. SystemCallFilter=)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path}:{number}: keep each setting on one line"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path}:{number}: {raw!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    values = unit[section].get(key)
    assert values is not None, f"{key}= missing from [{section}]"
    assert len(values) == 1, f"{key}= given {len(values)} times: {values}"
    return values[0]


def environment(unit: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    return dict(entry.split("=", 1) for value in unit["Service"].get("Environment", [])
                for entry in value.split())


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    need("systemd-analyze", binary is not None,
         "apt-get install -y systemd (scripts/ensure-system-deps --test does)")
    return binary


@pytest.fixture(scope="module")
def local_units(tmp_path_factory) -> dict[str, Path]:
    """Copies of the shipped units with this venv's bin directory as the install path."""
    directory = tmp_path_factory.mktemp("units")
    copies = {}
    for name in MAX_EXPOSURE:
        shipped = (UNITS / name).read_text(encoding="utf-8")
        assert shipped.count(INSTALLED_BIN) == 1, f"{name}: one ExecStart under {INSTALLED_BIN}"
        copies[name] = directory / name
        copies[name].write_text(shipped.replace(INSTALLED_BIN, f"{VENV_BIN}/"),
                                encoding="utf-8")
    return copies


def analyze(binary: str, *args: str | Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "",
                   "SYSTEMD_LOG_LEVEL": "info"}
    return subprocess.run([binary, *map(str, args)], capture_output=True, text=True,
                          env=environment, timeout=60)


def complaints(result: subprocess.CompletedProcess, units: list[Path]) -> list[str]:
    """verify's lines about ``units``: it exits 0 on an unknown or unparsable setting,
    but says so with the file or unit name (lines about other units are not ours)."""
    names = {unit.name for unit in units} | {str(unit) for unit in units}
    return [line for line in (result.stdout + result.stderr).splitlines()
            if any(name in line for name in names)]


def test_systemd_analyze_verify_is_clean(systemd_analyze: str,
                                         local_units: dict[str, Path]) -> None:
    for name in MAX_EXPOSURE:
        assert (VENV_BIN / name.removesuffix(".service")).exists(), "pip install -e . first"
    units = list(local_units.values())
    result = analyze(systemd_analyze, "verify", "--man=no", *units)
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints(result, units) == [], result.stdout + result.stderr


def test_verify_would_catch_a_bad_setting_or_a_missing_binary(
        systemd_analyze: str, local_units: dict[str, Path], tmp_path: Path) -> None:
    """The check above can fail: verify does complain, in a way it recognises."""
    broken = tmp_path / "drd.service"
    text = local_units["drd.service"].read_text(encoding="utf-8")
    broken.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strikt"),
                      encoding="utf-8")
    assert complaints(analyze(systemd_analyze, "verify", "--man=no", broken), [broken])
    missing = tmp_path / "drd-agent.service"
    missing.write_text((UNITS / "drd-agent.service").read_text(encoding="utf-8"),
                       encoding="utf-8")
    if not Path(INSTALLED_BIN).exists():
        result = analyze(systemd_analyze, "verify", "--man=no", missing)
        assert result.returncode != 0 or complaints(result, [missing])


@pytest.mark.parametrize(("name", "user", "command"), [
    ("drd.service", "drd", "drd serve"),
    ("drd-agent.service", "drd-agent", "drd-agent run"),
])
def test_each_unit_runs_a_dedicated_user_in_a_sandbox(name: str, user: str,
                                                      command: str) -> None:
    unit = parse_unit(UNITS / name)
    assert one(unit, "ExecStart") == INSTALLED_BIN + command
    assert one(unit, "User") == user and one(unit, "Group") == user
    assert one(unit, "Type") == "exec"
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "WantedBy", "Install") == "multi-user.target"
    for key in ("PrivateTmp", "NoNewPrivileges", "PrivateDevices", "RestrictSUIDSGID",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups"):
        assert one(unit, key) == "yes", key
    assert one(unit, "ProtectSystem") == "strict"
    # The state directory is the home the daemon is told to use, and writable.
    state = Path("/var/lib") / one(unit, "StateDirectory")
    assert state == Path("/var/lib") / user
    variable = "DRD_HOME" if user == "drd" else "DRD_AGENT_HOME"
    assert environment(unit)[variable] == str(state)
    assert str(state) in one(unit, "ReadWritePaths").split()
    assert one(unit, "StateDirectoryMode") == "0700" and one(unit, "UMask") == "0077"
    # SIGTERM goes to the daemon alone: it stops its own restic at a checkpoint.
    assert one(unit, "KillMode") == "mixed"


def test_the_centre_keeps_no_capability_and_may_read_its_passphrase() -> None:
    unit = parse_unit(UNITS / "drd.service")
    assert one(unit, "CapabilityBoundingSet") == ""
    assert one(unit, "AmbientCapabilities") == ""
    assert parse_listen(Config(home=Path("/var/lib/drd")).listen).port >= 1024, \
        "a privileged default port would need CAP_NET_BIND_SERVICE"
    assert one(unit, "ProtectHome") == "yes"
    # A credential name without a path: found in /etc/credstore (or handed down by the
    # service manager) when there, and no failure when a centre has no passphrase.
    assert one(unit, "LoadCredential") == CREDENTIAL_NAME
    # restic's cache for retention and `restic check` sits in the cache directory.
    cache = Path("/var/cache") / one(unit, "CacheDirectory")
    assert Path(environment(unit)["RESTIC_CACHE_DIR"]).is_relative_to(cache)
    assert str(cache) in one(unit, "ReadWritePaths").split()
    assert one(unit, "RuntimeDirectory") == "drd"  # the TLS files while the API starts
    assert one(unit, "PrivateUsers") == "yes"


def test_the_agent_reads_everything_but_changes_nothing() -> None:
    unit = parse_unit(UNITS / "drd-agent.service")
    assert one(unit, "CapabilityBoundingSet") == "CAP_DAC_READ_SEARCH"
    assert one(unit, "AmbientCapabilities") == "CAP_DAC_READ_SEARCH"
    # /home must stay visible for a policy that backs it up; PrivateUsers= would map the
    # files of other users to nobody and void CAP_DAC_READ_SEARCH on them.
    assert one(unit, "ProtectHome") == "read-only"
    assert "PrivateUsers" not in unit["Service"]
    assert one(unit, "ReadWritePaths").split() == ["/var/lib/drd-agent"]
    assert "LoadCredential" not in unit["Service"]


def test_security_exposure_stays_low(systemd_analyze: str,
                                     local_units: dict[str, Path]) -> None:
    help_text = analyze(systemd_analyze, "security", "--help").stdout
    need("systemd-analyze security --offline", "--offline" in help_text,
         "systemd 250 or newer (Debian 12 has 252)")
    for name, unit in local_units.items():
        result = analyze(systemd_analyze, "security", "--offline=true", "--no-pager", unit)
        assert result.returncode == 0, result.stdout + result.stderr
        match = re.search(rf"Overall exposure level for {re.escape(name)}: ([0-9.]+)",
                          result.stdout)
        assert match, result.stdout
        assert float(match.group(1)) <= MAX_EXPOSURE[name], result.stdout


def test_the_install_guide_matches_the_units() -> None:
    guide = INSTALL_DOC.read_text(encoding="utf-8")
    for needle in (INSTALLED_BIN + "drd", INSTALLED_BIN + "drd-agent", "systemd/drd.service",
                   "systemd/drd-agent.service", f"/etc/credstore/{CREDENTIAL_NAME}",
                   "/var/lib/drd-agent", "ProtectHome", "CAP_DAC_READ_SEARCH"):
        assert needle in guide, needle
