"""Per-path excludes mapped onto restic's global --exclude, and matched as restic does."""

from __future__ import annotations

import pytest

from agents.excludes import ExcludeMatcher, escape_glob, rooted_pattern, rooted_patterns
from drd.errors import UserError


def test_relative_patterns_are_rooted_at_their_source():
    assert rooted_pattern("/srv/share", "*.tmp") == "/srv/share/**/*.tmp"
    assert rooted_pattern("/srv/share/", "cache/") == "/srv/share/**/cache"
    assert rooted_pattern("/srv/share", "logs/*.log") == "/srv/share/**/logs/*.log"
    assert rooted_pattern("/srv/share", "./a//b/") == "/srv/share/**/a/b"


def test_absolute_and_negated_patterns():
    assert rooted_pattern("/srv/share", "/srv/share/tmp/") == "/srv/share/tmp"
    assert rooted_pattern("/srv/share", "!keep.tmp") == "!/srv/share/**/keep.tmp"


def test_glob_characters_in_the_source_path_are_escaped():
    assert escape_glob("/srv/a*b[1]?\\") == "/srv/a\\*b\\[1\\]\\?\\\\"
    assert rooted_pattern("/srv/we*rd", "*.tmp") == "/srv/we\\*rd/**/*.tmp"
    matcher = ExcludeMatcher([rooted_pattern("/srv/we*rd", "*.tmp")])
    assert matcher.excluded("/srv/we*rd/a.tmp")
    assert not matcher.excluded("/srv/weXrd/a.tmp")


def test_every_source_keeps_its_own_patterns_in_order():
    assert rooted_patterns([("/srv/share", ["*.tmp", "cache/"]), ("/etc", []),
                            ("/home", ["!*.keep"])]) == [
        "/srv/share/**/*.tmp", "/srv/share/**/cache", "!/home/**/*.keep"]


@pytest.mark.parametrize("pattern", ["", "!", "  ", "[", "a[]b", "x\\", "[z-a]"])
def test_patterns_restic_would_refuse_are_user_errors(pattern):
    with pytest.raises(UserError):
        rooted_pattern("/srv/share", pattern)


def patterns(*pairs):
    return ExcludeMatcher(rooted_patterns(pairs))


def test_a_pattern_applies_only_below_its_source():
    matcher = patterns(("/srv/share", ["*.tmp"]), ("/etc", []))
    assert matcher.excluded("/srv/share/a.tmp")
    assert matcher.excluded("/srv/share/deep/er/b.tmp")
    assert not matcher.excluded("/etc/c.tmp")
    assert not matcher.excluded("/srv/share")
    assert not matcher.excluded("/srv/share/a.tmpx")


def test_a_directory_pattern_matches_at_any_depth_and_files_of_that_name():
    matcher = patterns(("/srv/share", ["cache/"]))
    assert matcher.excluded("/srv/share/cache")
    assert matcher.excluded("/srv/share/a/b/cache")
    assert matcher.excluded("/srv/share/a/cache/inside")
    assert not matcher.excluded("/srv/share/cached")


def test_the_last_matching_pattern_decides_and_negation_re_includes():
    # seen with restic 0.14: --exclude SRC/**/*.tmp --exclude !SRC/**/keep.tmp keeps keep.tmp
    matcher = patterns(("/src", ["*.tmp", "!keep.tmp", "cache"]))
    assert matcher.excluded("/src/a/x.tmp")
    assert not matcher.excluded("/src/a/keep.tmp")
    assert matcher.excluded("/src/b/cache")
    assert not matcher.excluded("/src/a/y")


def test_go_glob_syntax():
    matcher = ExcludeMatcher(["/d/**/file[0-9].txt", "/d/**/[^a]?.log", "/d/**/lit\\*"])
    assert matcher.excluded("/d/file7.txt")
    assert not matcher.excluded("/d/fileX.txt")
    assert matcher.excluded("/d/x/b1.log")
    assert not matcher.excluded("/d/x/a1.log")
    assert matcher.excluded("/d/lit*")
    assert ExcludeMatcher(["/d/a]"]).excluded("/d/a]")
    assert not matcher.excluded("/d/litX")


def test_a_plain_relative_pattern_matches_any_run_of_components_as_in_restic():
    matcher = ExcludeMatcher(["a/b"])
    assert matcher.excluded("/x/a/b")
    assert matcher.excluded("/x/a/b/c")
    assert not matcher.excluded("/x/a/c/b")
    assert ExcludeMatcher(["/x/**"]).excluded("/x/y")
    assert not ExcludeMatcher([]).excluded("/anything")
