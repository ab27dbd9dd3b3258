"""docs/policy-reference.md is generated from the schema and must not drift from it."""

from pathlib import Path

from policies.reference import policy_reference_markdown
from policies.schema import Policy

DOC = Path(__file__).resolve().parents[3] / "docs" / "policy-reference.md"


def test_the_committed_reference_is_what_the_schema_generates() -> None:
    assert DOC.read_text() == policy_reference_markdown(), (
        "docs/policy-reference.md is stale: run "
        "'.venv/bin/python -m policies.reference > docs/policy-reference.md'"
    )


def test_every_top_level_field_is_documented() -> None:
    text = policy_reference_markdown()
    for name in Policy.model_fields:
        assert f"| `{name}` |" in text
