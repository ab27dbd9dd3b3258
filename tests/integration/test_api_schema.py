"""Schemathesis against the centre's own ``/openapi.json``: every operation, with no
token, an operator's, an owner's and an agent's, on a real catalog (SQLite and
PostgreSQL) holding an enrolled system, a snapshot and people's tokens.

It fails on any server error (5xx) and on any response that breaks the schema the API
publishes: its body, its content type and its headers. The generated requests include
what no client should send (out-of-range numbers, strange text, wrong types): those must
get a 4xx with a reason, never a 500.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
)

from drd.catalog.models import Department, System
from drd.services import tokens
from tests.integration.test_api_agent import Agent, _manifest, _report, centre  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance,
          response_headers_conformance]
EXAMPLES = 5  # per operation, mode and database: the suite has a time budget


@pytest.fixture
def callers(centre) -> dict[str, dict[str, str]]:  # noqa: F811 - the fixture imported above
    """A centre with something in it; the ``Authorization`` headers of who calls."""
    agent = Agent(centre, centre.token())
    agent.enroll()
    snapshot_id = uuid.uuid4().hex * 2
    manifest = _manifest(snapshot_id)
    response = agent.post("/v1/agent/snapshots", _report(snapshot_id, manifest=manifest))
    assert response.status_code in (200, 201), response.text
    with centre.catalog.session() as session:
        roads = Department(name="roads")
        session.add(roads)
        session.flush()
        session.add(System(name="roads-db", department_id=roads.id, status="enrolled"))
    earlier = centre.clock.now - dt.timedelta(minutes=1)
    operator = tokens.create_token(centre.catalog, role="operator", name="night", now=earlier)
    owner = tokens.create_token(centre.catalog, role="owner", name="parks-owner",
                                departments=["parks"], now=earlier)
    return {
        "anonymous": {},
        "operator": {"Authorization": f"Bearer {operator.token.reveal()}"},
        "owner": {"Authorization": f"Bearer {owner.token.reveal()}"},
        "agent": agent.headers,
    }


def test_no_server_error_and_no_response_outside_the_schema(centre, callers) -> None:  # noqa: F811
    schema = schemathesis.openapi.from_asgi("/openapi.json", centre.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [operation.label for operation in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _exercise(operation, mode, callers)


def _exercise(operation, mode: GenerationMode, callers: dict[str, dict[str, str]]) -> None:
    """Send ``operation`` the cases Hypothesis generates in ``mode``, as every caller."""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        for caller, headers in callers.items():
            try:
                case.call_and_validate(headers=dict(headers), checks=CHECKS)
            except Exception as failure:
                failure.add_note(f"{operation.label} ({mode.value} case) as {caller}")
                raise

    try:
        run()
    except Unsatisfiable:
        # an operation without parameters or a body has no invalid request to make
        if mode is not GenerationMode.NEGATIVE:
            raise
