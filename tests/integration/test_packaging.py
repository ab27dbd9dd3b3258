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


def _imported_top_level_modules(package_dirs: list[Path]) -> set[str]:
    """Every top-level module imported anywhere in the given packages' sources."""
    import ast

    names: set[str] = set()
    for directory in package_dirs:
        for source in directory.rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(), str(source))):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def _name(requirement: str) -> str:
    requirement = requirement.strip()
    for separator in ("[", ";", " ", ">", "<", "=", "!", "~"):
        requirement = requirement.split(separator)[0]
    return requirement.strip().lower().replace("_", "-")


def _with_their_dependencies(names: set[str]) -> set[str]:
    """``names`` and every distribution they need when installed without extras."""
    from importlib.metadata import PackageNotFoundError, requires

    closure, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            needed = requires(name) or []
        except PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in needed if "extra ==" not in r)
    return closure


def test_every_third_party_import_of_the_installed_code_is_a_runtime_dependency(
        wheel: zipfile.ZipFile) -> None:
    """A plain `pip install drd` (no test extras) must import: a module the code imports
    from a distribution that only the test extras bring in would crash the daemons (the
    agent's httpx once did)."""
    from importlib.metadata import packages_distributions

    (metadata,) = [n for n in wheel.namelist() if n.endswith("METADATA")]
    runtime = _with_their_dependencies({
        _name(line.split(":", 1)[1]) for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line})
    ours = {"drd", "agents", "policies", "restore_drills"}
    providers = packages_distributions()
    imported = _imported_top_level_modules([REPO / name for name in sorted(ours)])
    missing = {}
    for module in sorted(imported - ours - set(sys.stdlib_module_names)):
        distributions = {_name(d) for d in providers.get(module, [])}
        assert distributions, f"{module}: imported, but no installed distribution provides it"
        if not distributions & runtime:
            missing[module] = sorted(distributions)
    assert not missing, f"imported by drd but not installed with it: {missing}"
