"""The drill plan: its fields, their errors at file:line, the rotation rule, the targets."""

from datetime import timedelta

import pytest

from policies.loader import parse_policy_text
from policies.schema import Policy
from policies.sizes import format_size, parse_size

from .policies_cases import VALID, edit, only_problem, problems_of

DRILL = 'drill:\n  schedule: "0 3 * * 0"\n'
"""The start of VALID's drill section (lines 17 and 18)."""


def with_drill(extra: str, text: str = VALID) -> str:
    """``text`` with ``extra`` (lines indented for the drill mapping) after drill.schedule."""
    return edit(text, DRILL, DRILL + extra)


def test_defaults():
    drill = parse_policy_text(VALID).drill
    assert drill.period == timedelta(days=30)
    assert drill.snapshot == "latest"
    assert (drill.restore.percent, drill.restore.paths) == (100, [])
    assert (drill.sandbox.path, drill.sandbox.max_size) == (None, None)
    assert (drill.rto, drill.rpo) == (None, None)


def test_every_field_is_read():
    text = with_drill("  period: 21d\n  snapshot: oldest\n"
                      "  restore: {percent: 12.5}\n"
                      "  sandbox: {path: /var/tmp/drills, max_size: 10G}\n"
                      "  rto: 2h\n  rpo: 3h\n")
    drill = parse_policy_text(text).drill
    assert drill.period == timedelta(days=21)
    assert drill.snapshot == "oldest"
    assert drill.restore.percent == 12.5
    assert drill.sandbox.path == "/var/tmp/drills"
    assert drill.sandbox.max_size == 10 << 30
    assert (drill.rto, drill.rpo) == (timedelta(hours=2), timedelta(hours=3))


def test_restore_paths():
    text = with_drill("  restore:\n    paths: [/srv/share/finance, /app.sql]\n")
    assert parse_policy_text(text).drill.restore.paths == ["/srv/share/finance", "/app.sql"]


@pytest.mark.parametrize(
    ("extra", "line", "path", "message"),
    [
        ("  period: 0s\n", 19, "drill.period", "must be longer than 0s"),
        ("  snapshot: newest\n", 19, "drill.snapshot", None),
        ("  restore: {percent: 0}\n", 19, "drill.restore.percent", "must be > 0"),
        ("  restore: {percent: 101}\n", 19, "drill.restore.percent", "must be <= 100"),
        ("  restore:\n    paths: [srv/share]\n", 20, "drill.restore.paths[0]",
         "'srv/share' is not an absolute path (it must start with '/')"),
        ("  restore:\n    percent: 50\n    paths: [/srv/share]\n", 19, "drill.restore",
         "restore either `paths` or a `percent` below 100 of the files, not both"),
        ("  sandbox: {path: drills}\n", 19, "drill.sandbox.path", None),
        ("  sandbox:\n    max_size: 10X\n", 20, "drill.sandbox.max_size",
         "'10X' is not a size such as 500M, 20GiB or 1T (bytes; K, M, G, T are powers "
         "of 1024)"),
        ("  sandbox: {max_size: 0}\n", 19, "drill.sandbox.max_size", "must be at least 1 byte"),
        ("  rto: 4\n", 19, "drill.rto", None),
        ("  rpo: 0s\n", 19, "drill.rpo", "must be longer than 0s"),
        ("  restore: {share: 5}\n", 19, "drill.restore.share", "unknown field"),
    ],
)
def test_bad_values_are_named_at_their_line(extra, line, path, message):
    found_line, found_path, found_message = only_problem(with_drill(extra))
    assert (found_line, found_path) == (line, path)
    if message is not None:
        assert found_message == message


def test_a_schedule_too_rare_for_the_stores_is_refused_at_drill_schedule():
    # weekly drills: 4 follow any drill within 30d, one short of 5 stores
    text = edit(VALID, "stores: [dc-a, dc-b, region-b]",
                "stores: [dc-a, dc-b, region-b, s4, s5]")
    assert only_problem(text) == (
        18, "drill.schedule",
        "the schedule '0 3 * * 0' fires only 4 times in the 30d after a drill, but 5 "
        "store(s) must each be drilled within 30d; drill more often or lengthen drill.period")
    parse_policy_text(with_drill("  period: 35d\n", text))
    parse_policy_text(edit(text, '"0 3 * * 0"', '"0 3 * * *"'))


def test_a_written_period_is_where_the_rotation_problem_is_named():
    text = with_drill("  period: 20d\n")  # weekly: 2 drills follow within 20d, 3 stores
    line, path, message = only_problem(text)
    assert (line, path) == (19, "drill.period")
    assert message.startswith("the schedule '0 3 * * 0' fires only 2 times in the 20d")
    parse_policy_text(edit(text, "20d", "21d"))


def test_monthly_drills_count_the_longest_month():
    text = edit(VALID, "stores: [dc-a, dc-b, region-b]", "stores: [dc-a]")
    text = edit(text, "min_copies: 2", "min_copies: 1") + "single_region_ok: true\n"
    # January has 31 days: the drill after the one of January 1st comes too late
    assert only_problem(edit(text, '"0 3 * * 0"', '"0 3 1 * *"'))[1:] == (
        "drill.schedule", "the schedule '0 3 1 * *' does not fire in the 30d after a "
        "drill, but 1 store(s) must each be drilled within 30d; drill more often or "
        "lengthen drill.period")
    parse_policy_text(edit(with_drill("  period: 31d\n", text), '"0 3 * * 0"', '"0 3 1 * *"'))


def test_all_problems_are_reported_together():
    text = with_drill("  snapshot: newest\n  rto: 0s\n")
    assert [path for _line, path, _message in problems_of(text)] == [
        "drill.snapshot", "drill.rto"]


def test_drill_targets_default_to_the_policys():
    policy = parse_policy_text(VALID)
    assert policy.drill_targets() == (timedelta(hours=4), timedelta(hours=1))
    own = parse_policy_text(with_drill("  rto: 30m\n"))
    assert own.drill_targets() == (timedelta(minutes=30), timedelta(hours=1))
    no_drill = parse_policy_text(VALID[:VALID.index("drill:")])
    assert no_drill.drill is None
    assert no_drill.drill_targets() == (timedelta(hours=4), timedelta(hours=1))


def test_the_stored_document_round_trips():
    text = with_drill("  period: 21d\n  snapshot: oldest\n  restore: {percent: 12.5}\n"
                      "  sandbox: {path: /var/tmp/drills, max_size: 1536}\n  rpo: 90m\n")
    policy = parse_policy_text(text)
    document = policy.model_dump(mode="json")
    assert document["drill"]["sandbox"] == {"path": "/var/tmp/drills", "max_size": "1536"}
    assert document["drill"]["period"] == "21d" and document["drill"]["rpo"] == "90m"
    assert document["drill"]["rto"] is None
    rebuilt = Policy.model_validate(document)
    assert rebuilt.model_dump() == policy.model_dump()
    assert rebuilt.drill_targets() == (timedelta(hours=4), timedelta(minutes=90))


@pytest.mark.parametrize("size", [1, 1023, 1024, 1536, 10 << 30, (3 << 40) + (1 << 30), 1 << 50])
def test_format_size_round_trips(size):
    assert parse_size(format_size(size)) == size


def test_format_size_uses_the_largest_whole_unit():
    assert [format_size(n) for n in (10 << 30, 1 << 20, 1536, 2048)] == ["10G", "1M", "1536",
                                                                        "2K"]
