"""The wheel holds every package, the migrations, the example policies and both commands."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (path,) = out.glob("drd-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_has_every_package_and_data_file(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for required in ("drd/__init__.py", "agents/__init__.py", "policies/__init__.py",
                     "restore_drills/__init__.py", "drd/cli/main.py", "agents/cli.py",
                     "drd/catalog/migrations/env.py",
                     "drd/catalog/migrations/script.py.mako",
                     "drd/catalog/migrations/versions/0001_initial.py",
                     "policies/examples/fileserver.yaml", "policies/examples/database.yaml"):
        assert required in names, required
    assert not any(name.startswith("tests/") for name in names)


def test_the_wheel_declares_both_commands_and_bounded_dependencies(
        wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    assert dict(parser["console_scripts"]) == {"drd": "drd.cli.main:main",
                                               "drd-agent": "agents.cli:main"}
    (metadata,) = [n for n in wheel.namelist() if n.endswith("METADATA")]
    requires = [line.split(":", 1)[1].strip() for line in
                wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    assert requires
    for requirement in requires:
        assert ">=" in requirement, f"no lower bound: {requirement}"
    extras = {r.split("extra ==")[1].strip(" '\"") for r in requires if "extra ==" in r}
    assert extras >= {"test", "dev"}
