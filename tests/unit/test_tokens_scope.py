"""Who may read and do what: the pure decisions of drd.services.tokens."""

from __future__ import annotations

import pytest

from drd.errors import UserError
from drd.services.tokens import Principal, check_scope


def principal(role: str, departments=(), systems=()) -> Principal:
    return Principal(token_id=1, name="t", role=role, departments=tuple(departments),
                     systems=tuple(systems))


@pytest.mark.parametrize("role, department, system, reads, requests, changes", [
    ("admin", "parks", "fs1", True, True, True),
    ("operator", "parks", "fs1", True, False, False),
    ("owner", "parks", "fs1", True, True, False),        # its department
    ("owner", "finance", "fs9", True, True, False),      # its system, another department
    ("owner", "finance", "ledger", False, False, False),  # neither
    ("agent", "parks", "fs1", True, False, False),       # its own system
    ("agent", "parks", "fs2", False, False, False),      # a neighbour of the same department
    ("enrollment", "parks", "fs1", False, False, False),
])
def test_scopes(role, department, system, reads, requests, changes):
    caller = principal(role, departments=["parks"] if role == "owner" else [],
                       systems={"owner": ["fs9"], "agent": ["fs1"]}.get(role, []))
    assert caller.may_read(department, system) is reads
    assert caller.may_request(department, system) is requests
    assert caller.may_change is changes


@pytest.mark.parametrize("role, departments, systems, message", [
    ("owner", [], [], "needs --department"),
    ("operator", ["parks"], [], "reads every system"),
    ("admin", [], ["fs1"], "reads every system"),
    ("agent", [], ["fs1"], "enrolling"),
])
def test_scopes_that_make_no_sense_are_refused(role, departments, systems, message):
    with pytest.raises(UserError, match=message):
        check_scope(role, departments, systems)


def test_sensible_scopes_pass():
    check_scope("owner", ["parks"], [])
    check_scope("owner", [], ["fs1"])
    check_scope("operator", [], [])
