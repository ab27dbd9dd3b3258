"""policies/examples/*.yaml: the shipped examples are valid against the demo stores."""

from pathlib import Path

import pytest

import policies
from policies.loader import load_policies, load_policy
from policies.schema import CommandSource, PathSource

from .policies_cases import DEMO_REGIONS

EXAMPLES = Path(policies.__file__).parent / "examples"


def test_both_examples_exist():
    assert sorted(path.name for path in EXAMPLES.glob("*.yaml")) == [
        "database.yaml", "fileserver.yaml"]


@pytest.mark.parametrize("name", ["fileserver.yaml", "database.yaml"])
def test_an_example_is_valid(name):
    policy = load_policy(EXAMPLES / name, DEMO_REGIONS)
    assert set(policy.stores) == {"dc-a", "dc-b", "region-b"}


def test_the_examples_load_together():
    names = [p.name for p in load_policies(sorted(EXAMPLES.glob("*.yaml")), DEMO_REGIONS)]
    assert names == ["app-database", "fileserver"]


def test_the_fileserver_example_backs_up_paths_hourly():
    policy = load_policy(EXAMPLES / "fileserver.yaml", DEMO_REGIONS)
    assert policy.schedule == "0 * * * *"
    assert all(isinstance(source, PathSource) for source in policy.sources)
    assert policy.sources[0].exclude


def test_the_database_example_dumps_through_a_command_and_checks_the_restore():
    policy = load_policy(EXAMPLES / "database.yaml", DEMO_REGIONS)
    dump = policy.sources[0]
    assert isinstance(dump, CommandSource) and dump.filename == "app.sql"
    check = policy.drill.checks[0]
    assert any("{restored}/app.sql" in argument for argument in check.command)
    assert check.expect_stdout == "ok"
