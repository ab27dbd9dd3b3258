"""policies.loader: every problem, all at once, as file:line: field.path: message."""

import hashlib

import pytest

from drd.errors import EXIT_USAGE, UserError
from policies.loader import load_policies, load_policy, parse_policy_text
from policies.problems import PolicyError, Problem
from policies.schema import CommandSource, PathSource

from .policies_cases import DEMO_REGIONS, LAST_LINE, VALID, edit, only_problem, problems_of


def test_the_valid_text_loads():
    policy = parse_policy_text(VALID, "p.yaml", DEMO_REGIONS)
    assert policy.name == "fileserver"
    assert isinstance(policy.sources[0], PathSource)
    assert isinstance(policy.sources[1], CommandSource)
    assert policy.drill.checks[0].timeout.total_seconds() == 300


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "message"),
    [
        ("policy: fileserver", "policy: File Server", 1, "policy", "is not a valid name"),
        ('schedule: "0 * * * *"', 'schedule: "0 * * * * *"', 3, "schedule", "has 6 fields"),
        ("schedule: \"0 * * * *\"", "schedule: 5", 3, "schedule", "must be text, not 5"),
        ("path: /srv/share", "path: srv/share", 5, "sources[0].path", "not an absolute path"),
        ('exclude: ["*.tmp"]', 'exclude: ["*.tmp", ""]', 6, "sources[0].exclude[1]",
         "must not be empty"),
        ('command: ["sqlite3", "/srv/app/app.db", ".dump"]',
         'command: "sqlite3 /srv/app/app.db .dump"', 7, "sources[1].command",
         "must be a list of arguments"),
        ('command: ["sqlite3", "/srv/app/app.db", ".dump"]', "command: []", 7,
         "sources[1].command", "must not be empty"),
        ("filename: app.sql", "filename: dumps/app.sql", 8, "sources[1].filename",
         "not a plain file name"),
        ("stores: [dc-a, dc-b, region-b]", "stores: [dc-a, dc-b, dc-a]", 9, "stores",
         "store 'dc-a' appears more than once"),
        ("stores: [dc-a, dc-b, region-b]", "stores: []", 9, "stores", "must not be empty"),
        ("stores: [dc-a, dc-b, region-b]", "stores: [dc-a, DC_B]", 9, "stores[1]",
         "is not a valid name"),
        ("min_copies: 2", "min_copies: 0", 10, "min_copies", "must be >= 1"),
        ("min_copies: 2", "min_copies: two", 10, "min_copies",
         "must be a whole number, not the text 'two'"),
        ("min_copies: 2", 'min_copies: "2"', 10, "min_copies",
         "must be a whole number, not the text '2'"),
        ("retention:\n  keep_last: 7\n  keep_daily: 14\n", "retention: 7\n", 11, "retention",
         "must be a mapping (key: value), not 7"),
        ("keep_daily: 14", "keep_daily: -1", 13, "retention.keep_daily", "must be >= 0"),
        ("keep_daily: 14", "keep_daily:", 13, "retention.keep_daily",
         "must be a whole number, not empty"),
        ("object_lock_days: 7", "object_lock_days: 1.5", 14, "object_lock_days",
         "must be a whole number, not 1.5"),
        ("rpo: 1h", "rpo: 0s", 15, "rpo", "must be longer than 0s"),
        ("rpo: 1h", "rpo: 60", 15, "rpo", "a bare number has no unit"),
        ("rto: 4h", "rto: 4 hours", 16, "rto", "'4 hours' is not a duration"),
        ('schedule: "0 3 * * 0"', 'schedule: "0 3 * * 8"', 18, "drill.schedule",
         "out of range"),
        ("- name: app-db", "- name: App DB", 20, "drill.checks[0].name", "not a valid name"),
        ('command: ["sqlite3", "{restored}/app.sql", "PRAGMA integrity_check"]',
         'command: ["", "{restored}/app.sql"]', 21, "drill.checks[0].command",
         "the program (the first argument) must not be empty"),
        ("timeout: 5m", "timeout: 5 minutes", 22, "drill.checks[0].timeout",
         "is not a duration"),
    ],
)
def test_a_field_error_names_its_line_and_path(old, new, line, path, message):
    found_line, found_path, found_message = only_problem(edit(VALID, old, new))
    assert (found_line, found_path) == (line, path)
    assert message in found_message


@pytest.mark.parametrize(
    ("old", "line", "path"),
    [
        ("rto: 4h\n", 1, "rto"),
        ("policy: fileserver\n", 1, "policy"),
        ("    filename: app.sql\n", 7, "sources[1].filename"),
        ('  schedule: "0 3 * * 0"\n', 17, "drill.schedule"),
        ("      command: [\"sqlite3\", \"{restored}/app.sql\", \"PRAGMA integrity_check\"]\n",
         20, "drill.checks[0].command"),
    ],
)
def test_a_missing_field_is_reported_at_its_mapping(old, line, path):
    assert only_problem(edit(VALID, old, "")) == (line, path, "is required")


@pytest.mark.parametrize(
    ("old", "new", "line", "path"),
    [
        ("rto: 4h\n", "rto: 4h\ncolour: blue\n", 17, "colour"),
        ("  keep_daily: 14\n", "  keep_daily: 14\n  keep_forever: true\n", 14,
         "retention.keep_forever"),
        ('    exclude: ["*.tmp"]\n', '    exclude: ["*.tmp"]\n    excludes: [x]\n', 7,
         "sources[0].excludes"),
        ("      timeout: 5m\n", "      timeout: 5m\n      retries: 3\n", 23,
         "drill.checks[0].retries"),
        ("drill:\n", "drill:\n  when: never\n", 18, "drill.when"),
        ("rto: 4h\n", "rto: 4h\nmanifest: {sample_percent: 5, sample: 1}\n", 17,
         "manifest.sample"),
        ("rto: 4h\n", "rto: 4h\nverification: {period: 7d, full: true}\n", 17,
         "verification.full"),
    ],
)
def test_unknown_keys_are_refused_at_every_level(old, new, line, path):
    assert only_problem(edit(VALID, old, new))[:2] == (line, path)
    assert only_problem(edit(VALID, old, new))[2].startswith("unknown field")


def test_an_unknown_key_suggests_the_field_meant():
    text = edit(VALID, "keep_daily: 14", "keep_dayly: 14")
    assert only_problem(text) == (13, "retention.keep_dayly",
                                  "unknown field (did you mean 'keep_daily'?)")


def test_a_source_is_exactly_one_kind():
    both = edit(VALID, "    filename: app.sql\n", "    filename: app.sql\n    path: /srv\n")
    assert only_problem(both) == (7, "sources[1]",
                                  "a source has either `path` or `command`, not both")
    neither = edit(VALID, "  - path: /srv/share\n", "  - paths: /srv/share\n")
    assert only_problem(neither)[:2] == (5, "sources[0]")
    assert "needs either `path`" in only_problem(neither)[2]
    scalar = edit(VALID, "sources:\n", "sources:\n  - /srv/other\n")
    assert only_problem(scalar) == (5, "sources[0]",
                                    "must be a mapping with either `path` or `command`")


def test_two_commands_may_not_write_the_same_file():
    text = edit(VALID, "stores:", "  - command: [pg_dump, app]\n    filename: app.sql\nstores:")
    assert only_problem(text) == (4, "sources",
                                  "command source filename 'app.sql' appears more than once")


def test_check_names_are_unique():
    text = VALID + "    - name: app-db\n      command: [/bin/true]\n"
    assert only_problem(text) == (19, "drill.checks", "check name 'app-db' appears more than once")


def test_all_errors_are_reported_at_once():
    text = edit(VALID, "keep_daily: 14", "keep_daily: -1")
    text = edit(text, "path: /srv/share", "path: relative")
    text = edit(text, "timeout: 5m", "timeout: soon")
    problems = problems_of(text)
    assert [(line, path) for line, path, _ in problems] == [
        (5, "sources[0].path"), (13, "retention.keep_daily"), (22, "drill.checks[0].timeout"),
    ]


def test_duplicate_keys_are_refused():
    text = edit(VALID, "rpo: 1h\n", "rpo: 1h\nrpo: 2h\n")
    assert only_problem(text) == (16, "rpo", "duplicate key; it is already set at line 15")
    nested = edit(VALID, "  keep_last: 7\n", "  keep_last: 7\n  keep_last: 8\n")
    assert only_problem(nested) == (13, "retention.keep_last",
                                    "duplicate key; it is already set at line 12")


def test_duplicate_keys_are_reported_with_schema_errors():
    text = edit(VALID, "rpo: 1h\n", "rpo: 1h\nrpo: 2h\n")
    text = edit(text, "min_copies: 2", "min_copies: 0")
    assert [(line, path) for line, path, _ in problems_of(text)] == [
        (10, "min_copies"), (16, "rpo")]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("policy: a\nstores: [dc-a, dc-b\nmin_copies: 2\n", 3),
        ("policy: a\n  schedule: x\n", 2),
        ("policy: a\nsources:\n\t- path: /x\n", 3),
        ("policy: a\n---\npolicy: b\n", 2),
        ("schedule: */5 * * * *\n", 1),
    ],
)
def test_a_yaml_syntax_error_is_one_problem_with_its_line(text, line):
    found_line, path, message = only_problem(text)
    assert (found_line, path) == (line, "")
    assert message


def test_an_empty_file_is_refused():
    assert only_problem("")[:2] == (1, "")
    assert "the file is empty" in only_problem("# nothing\n")[2]


def test_a_document_that_is_not_a_mapping_is_refused():
    assert only_problem("- policy: a\n") == (1, "", "must be a mapping (key: value), not a list")


def test_keys_must_be_text():
    text = VALID + "1: one\n"
    assert only_problem(text) == (LAST_LINE + 1, "", "a key must be text, not '1'")


def test_anchors_and_merge_keys_work():
    text = edit(VALID, "retention:\n  keep_last: 7\n  keep_daily: 14\n",
                "retention: &keep\n  keep_last: 7\n  keep_daily: 14\n")
    text = edit(text, "rpo: 1h\n", "rpo: 1h\nx-unused: *keep\n")
    # the alias is resolved, and its key is still refused at its own line
    assert only_problem(text)[:2] == (16, "x-unused")
    merged = edit(VALID, "retention:\n  keep_last: 7\n  keep_daily: 14\n",
                  "retention:\n  <<: {keep_last: 7, keep_daily: 3}\n  keep_daily: 14\n")
    assert parse_policy_text(merged).retention.keep_daily == 14


def test_policy_error_is_a_user_error_listing_one_problem_per_line():
    text = edit(VALID, "keep_daily: 14", "keep_daily: -1")
    text = edit(text, "rto: 4h\n", "")
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(text, "policies/fs.yaml")
    assert isinstance(caught.value, UserError)
    assert caught.value.exit_status == EXIT_USAGE
    assert str(caught.value) == (
        "policies/fs.yaml:1: rto: is required\n"
        "policies/fs.yaml:13: retention.keep_daily: must be >= 0"
    )


def test_problem_text_without_path_or_line():
    assert str(Problem("a.yaml", 3, "", "bad")) == "a.yaml:3: bad"
    assert str(Problem("a.yaml", None, "", "cannot be read")) == "a.yaml: cannot be read"


def test_cross_field_rules_run_only_after_the_schema_passed():
    text = edit(VALID, "min_copies: 2", "min_copies: 9")
    assert only_problem(text)[1] == "min_copies"
    text = edit(text, "rto: 4h", "rto: later")
    assert only_problem(text)[1] == "rto"


def test_a_loaded_policy_keeps_its_source(tmp_path):
    path = tmp_path / "fs.yaml"
    path.write_text(VALID)
    policy = load_policy(path, DEMO_REGIONS)
    assert policy.source_path == str(path)
    assert policy.source_text == VALID
    assert policy.source_sha256 == hashlib.sha256(VALID.encode()).hexdigest()
    assert parse_policy_text(VALID).source_path == "<policy>"


def test_load_policies_collects_problems_of_every_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(edit(VALID, "policy: fileserver", "policy: good"))
    bad_one = tmp_path / "bad1.yaml"
    bad_one.write_text(edit(VALID, "min_copies: 2", "min_copies: 0"))
    bad_two = tmp_path / "bad2.yaml"
    bad_two.write_text(edit(VALID, "rpo: 1h", "rpo: soon"))
    with pytest.raises(PolicyError) as caught:
        load_policies([good, bad_one, bad_two])
    assert [(p.file, p.line, p.path) for p in caught.value.problems] == [
        (str(bad_one), 10, "min_copies"), (str(bad_two), 15, "rpo")]


def test_load_policies_returns_every_policy_in_order(tmp_path):
    paths = []
    for name in ("zeta", "alpha"):
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(edit(VALID, "policy: fileserver", f"policy: {name}"))
    assert [p.name for p in load_policies(paths, DEMO_REGIONS)] == ["zeta", "alpha"]


def test_a_policy_name_used_twice_is_refused(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(VALID)
    second.write_text("# the same name again\n" + VALID)
    with pytest.raises(PolicyError) as caught:
        load_policies([first, second])
    assert [str(p) for p in caught.value.problems] == [
        f"{second}:2: policy: the name 'fileserver' is already used by {first}"]


def test_unreadable_files_are_problems_without_a_line(tmp_path):
    missing = tmp_path / "missing.yaml"
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"policy: \xff\xfe\n")
    with pytest.raises(PolicyError) as caught:
        load_policies([missing, binary])
    assert [str(p) for p in caught.value.problems] == [
        f"{binary}: is not UTF-8 text (invalid start byte)",
        f"{missing}: cannot be read: No such file or directory",
    ]
