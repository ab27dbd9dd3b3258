"""Broken or hostile policy files: every one ends as a PolicyError, never a traceback.

Characters YAML refuses (B3), numbers too large to compute with (B4), nesting deep
enough to exhaust the stack (B5), alias bombs, impossible scalars, and files that are
not small regular files.
"""

import os

import pytest

from policies import yaml_lines
from policies.loader import MAX_FILE_BYTES, load_policies, load_policy, parse_policy_text
from policies.problems import PolicyError

from .policies_cases import LAST_LINE, VALID, edit, only_problem, problems_of

# -- characters YAML's reader refuses (B3) ----------------------------------------------


@pytest.mark.parametrize(
    ("character", "code"),
    [("\0", "#x0000"), ("\x07", "#x0007"), ("\x1b", "#x001b"), ("\ufffe", "#xfffe")],
)
def test_a_character_yaml_refuses_is_a_problem_at_its_line(character, code):
    text = VALID + f"x: a{character}b\n"
    line, path, message = only_problem(text)
    assert (line, path) == (LAST_LINE + 1, "")
    assert message == f"character {code} is not allowed in YAML (special characters are " \
        "not allowed)"


def test_a_nul_byte_in_a_file_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"policy: a\ndescription: \x00\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}:2: character #x0000 is not allowed in YAML (special characters are not "
        "allowed)"]


@pytest.mark.parametrize("breaks", ["\n", "\r\n", "\r", "\u2028"])
def test_the_line_of_a_refused_character_counts_yaml_line_breaks(breaks):
    with pytest.raises(yaml_lines.YamlSyntaxError) as caught:
        yaml_lines.read_yaml(breaks.join(["a: 1", "b: 2", "c: \0"]))
    assert caught.value.line == 3


# -- numbers too large (B4) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "message"),
    [
        ("keep_daily: 14", "keep_yearly: 100000000", 13, "retention.keep_yearly",
         "must be <= 100000"),
        ("keep_daily: 14", "keep_daily: 100001", 13, "retention.keep_daily",
         "must be <= 100000"),
        ("keep_last: 7", "keep_last: 100001", 12, "retention.keep_last", "must be <= 100000"),
        ("object_lock_days: 7", "object_lock_days: 1000000000", 14, "object_lock_days",
         "must be <= 36500"),
        ("object_lock_days: 7", "object_lock_days: 36501", 14, "object_lock_days",
         "must be <= 36500"),
        ("keep_daily: 14", "keep_within: 36501d", 13, "retention.keep_within",
         "must be at most 36500d (100 years)"),
        ("rpo: 1h", "rpo: 5215w", 15, "rpo", "must be at most 36500d (100 years)"),
        ("rto: 4h", "rto: 999999999999999w", 16, "rto", "is too long a duration"),
        ("timeout: 5m", "timeout: 36500d1s", 22, "drill.checks[0].timeout",
         "must be at most 36500d (100 years)"),
    ],
)
def test_numbers_beyond_the_bounds_are_refused(old, new, line, path, message):
    found_line, found_path, found_message = only_problem(edit(VALID, old, new))
    assert (found_line, found_path) == (line, path)
    assert message in found_message


def test_the_largest_values_allowed_load_and_compute():
    text = edit(VALID, "keep_daily: 14", "keep_yearly: 100000\n  keep_within: 36500d")
    text = edit(text, "keep_last: 7", "keep_last: 100000")
    text = edit(text, "object_lock_days: 7", "object_lock_days: 36500")
    text = edit(text, "rpo: 1h", "rpo: 36500d")
    policy = parse_policy_text(text)
    assert (policy.retention.keep_yearly, policy.object_lock_days) == (100000, 36500)


def test_a_whole_number_of_thousands_of_digits_is_a_problem_at_its_line():
    line, path, message = only_problem(edit(VALID, "min_copies: 2", "min_copies: " + "9" * 5000))
    assert (line, path) == (10, "")
    assert message == "'9999999999999999999999999999999999999...' cannot be read as a whole " \
        "number: it has too many digits"


def test_an_impossible_date_is_a_problem_at_its_line():
    text = edit(VALID, "description: test policy", "description: 2024-13-45")
    assert only_problem(text) == (
        2, "", "'2024-13-45' cannot be read as a date or time: month must be in 1..12")
    key = VALID + "2024-02-30: x\n"
    assert only_problem(key)[:2] == (LAST_LINE + 1, "")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("!!bool maybe", "'maybe' cannot be read as true or false"),
        ("!!timestamp soon", "'soon' cannot be read as a date or time"),
        ("!!timestamp 2024-02-30", "'2024-02-30' cannot be read as a date or time: day is out "
         "of range for month"),
        ("!!int 12a", "'12a' cannot be read as a whole number"),
        ("!!float x", "'x' cannot be read as a number"),
    ],
)
def test_an_explicit_tag_on_text_it_cannot_read_is_a_problem(value, message):
    text = edit(VALID, "description: test policy", f"description: {value}")
    assert only_problem(text) == (2, "", message)


@pytest.mark.parametrize("value", ["!!binary é", "!!python/object:os.system x", "!unknown x"])
def test_tags_the_safe_loader_refuses_are_a_problem(value):
    text = edit(VALID, "description: test policy", f"description: {value}")
    assert only_problem(text)[:2] == (2, "")


# -- nesting and aliases (B5) -----------------------------------------------------------

TOO_DEEP = f"nested too deeply (more than {yaml_lines.MAX_DEPTH} levels)"


@pytest.mark.parametrize(
    "tail",
    [
        "x: " + "[" * 5000 + "]" * 5000 + "\n",
        "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
        "x:\n" + "".join(" " * depth + "- \n" for depth in range(1, 3000)),
        "x:\n" + "".join(" " * depth + "a:\n" for depth in range(1, 3000)),
    ],
    ids=["flow lists", "flow mappings", "block lists", "block mappings"],
)
def test_deep_nesting_is_a_problem_not_a_recursion_error(tail):
    line, path, message = only_problem(VALID + tail)
    assert (path, message) == ("", TOO_DEEP)
    assert line > LAST_LINE


def test_nesting_within_the_limit_is_read():
    depth = yaml_lines.MAX_DEPTH - 1
    document = yaml_lines.read_yaml("x: " + "[" * depth + "]" * depth + "\n")
    assert document.data["x"] is not None


def test_deep_nesting_built_through_aliases_is_refused():
    chain = "a0: &a0 [1]\n" + "".join(
        f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]\n" for i in range(1, 300))
    assert only_problem(VALID + chain)[1:] == ("", TOO_DEEP)
    merges = "m0: &m0 {x: 1}\n" + "".join(
        f"m{i}: &m{i} {{<<: *m{i - 1}}}\n" for i in range(1, 3000))
    assert only_problem(VALID + merges)[1:] == ("", TOO_DEEP)


def test_a_recursion_error_is_caught_whatever_the_limit(monkeypatch):
    monkeypatch.setattr(yaml_lines, "MAX_DEPTH", 10**9)
    assert only_problem(VALID + "x: " + "[" * 5000 + "]" * 5000 + "\n")[1:] == ("", TOO_DEEP)


def test_an_alias_bomb_is_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
        for i in range(8))
    problems = problems_of(bomb)
    assert len(problems) == 1
    assert problems[0][1:] == ("", f"too many values (more than {yaml_lines.MAX_VALUES}, "
                               "counting each use of an alias in full)")


def test_a_bad_merge_value_is_one_problem():
    text = edit(VALID, "  keep_last: 7\n", "  <<: 7\n  keep_last: 7\n")
    assert only_problem(text) == (12, "", "a << merge key needs a mapping or a list of mappings")


# -- files that are not small regular files ---------------------------------------------


def problem_texts(paths):
    with pytest.raises(PolicyError) as caught:
        load_policies(paths)
    return [str(problem) for problem in caught.value.problems]


def test_a_directory_is_refused(tmp_path):
    assert problem_texts([tmp_path]) == [f"{tmp_path}: is a directory"]


def test_a_device_is_refused_without_reading_it(tmp_path):
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    assert problem_texts(["/dev/null", zero]) == [
        "/dev/null: is not a regular file", f"{zero}: is not a regular file"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    # a blocking open() would wait here for a writer that never comes
    assert problem_texts([fifo]) == [f"{fifo}: is not a regular file"]


def test_a_file_larger_than_1_mib_is_refused(tmp_path):
    large = tmp_path / "large.yaml"
    large.write_bytes(VALID.encode() + b"#" * MAX_FILE_BYTES)
    assert problem_texts([large]) == [f"{large}: is larger than 1 MiB"]


def test_a_file_of_exactly_1_mib_is_read(tmp_path):
    padded = tmp_path / "padded.yaml"
    padding = MAX_FILE_BYTES - len(VALID.encode()) - 1
    padded.write_bytes(VALID.encode() + b"#" * padding + b"\n")
    assert padded.stat().st_size == MAX_FILE_BYTES
    assert load_policy(padded).name == "fileserver"


def test_crlf_line_ends_are_read_as_before(tmp_path):
    crlf = tmp_path / "crlf.yaml"
    crlf.write_bytes(edit(VALID, "min_copies: 2", "min_copies: 0").replace("\n", "\r\n")
                     .encode())
    assert problem_texts([crlf]) == [f"{crlf}:10: min_copies: must be >= 1"]
    crlf.write_bytes(VALID.replace("\n", "\r\n").encode())
    assert load_policy(crlf).source_text == VALID
