"""drd.names: the one name rule, and the policy schema using it (not a copy of it)."""

import ast
import sys
from pathlib import Path

import pytest

import drd.names
from drd.errors import UserError
from drd.names import NAME_PATTERN, is_valid_name, name_problem, require_name
from policies.schema import Policy

from .policies_cases import VALID, edit, only_problem

RULE = "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"


@pytest.mark.parametrize("name", ["a", "0", "dc-a", "a1-b2", "a" * 63, "x--y"])
def test_valid_names(name):
    assert is_valid_name(name)
    assert name_problem(name) is None
    assert require_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "File Server", "-a", "a-", "a_b", "a.b", "a" * 64, "a\n", "é", None, 7])
def test_invalid_names(name):
    assert not is_valid_name(name)
    assert name_problem(name) == f"{name!r} is not a valid name: {RULE}"


def test_the_kind_of_name_can_be_said():
    assert name_problem("DC_A", "store name") == f"'DC_A' is not a valid store name: {RULE}"
    with pytest.raises(UserError, match="'DC_A' is not a valid store name: use 1-63"):
        require_name("DC_A", "store name")


def test_policies_use_the_rule_and_its_message():
    assert Policy.model_json_schema()["properties"]["policy"]["pattern"] == NAME_PATTERN
    text = edit(VALID, "policy: fileserver", "policy: File Server")
    assert only_problem(text) == (1, "policy", name_problem("File Server"))


def test_drd_names_is_a_bottom_module():
    tree = ast.parse(Path(drd.names.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported - {"drd.errors", "__future__"} <= sys.stdlib_module_names
