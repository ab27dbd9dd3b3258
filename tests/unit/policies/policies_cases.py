"""A valid policy text with known line numbers, and helpers to break it (shared by tests)."""

from policies.loader import parse_policy_text
from policies.problems import PolicyError

DEMO_REGIONS = {"dc-a": "region-a", "dc-b": "region-a", "region-b": "region-b"}

# Line numbers matter: the tests point at them.
VALID = """\
policy: fileserver
description: test policy
schedule: "0 * * * *"
sources:
  - path: /srv/share
    exclude: ["*.tmp"]
  - command: ["sqlite3", "/srv/app/app.db", ".dump"]
    filename: app.sql
stores: [dc-a, dc-b, region-b]
min_copies: 2
retention:
  keep_last: 7
  keep_daily: 14
object_lock_days: 7
rpo: 1h
rto: 4h
drill:
  schedule: "0 3 * * 0"
  checks:
    - name: app-db
      command: ["sqlite3", "{restored}/app.sql", "PRAGMA integrity_check"]
      timeout: 5m
"""
LAST_LINE = VALID.count("\n")


def edit(text, old, new):
    """``text`` with the one occurrence of ``old`` replaced by ``new``."""
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def problems_of(text, store_regions=None, filename="p.yaml"):
    """The problems of ``text`` as ``(line, path, message)``; fails if it is valid."""
    try:
        parse_policy_text(text, filename, store_regions)
    except PolicyError as error:
        return [(problem.line, problem.path, problem.message) for problem in error.problems]
    raise AssertionError("the policy was accepted")


def only_problem(text, store_regions=None):
    """The single problem of ``text`` as ``(line, path, message)``."""
    problems = problems_of(text, store_regions)
    assert len(problems) == 1, problems
    return problems[0]
