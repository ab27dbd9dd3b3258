"""Policies: the typed schema, loading with ``file:line`` errors, and retention rules.

- ``schema``: the pydantic models (:class:`Policy` and its parts);
- ``loader``: :func:`load_policy`, :func:`load_policies`, :func:`parse_policy_text`;
- ``problems``: :class:`Problem`, :class:`PolicyError` (a ``UserError``, exit 2);
- ``rules`` and ``object_lock``: the cross-field rules;
- ``retention``: :func:`apply_retention`, restic's ``forget --keep-*`` as a pure function;
- ``durations`` and ``cron``: the small value languages policies are written in;
- ``sample``: :func:`example_policy_yaml`, a sample file generated from the schema;
- ``reference``: ``docs/policy-reference.md``, generated from the schema;
- ``introspect``: which models a field holds, for ``sample`` and ``reference``.
"""

from policies.cron import cron_trigger
from policies.durations import format_duration, parse_duration
from policies.loader import load_policies, load_policy, parse_policy_text
from policies.problems import PolicyError, Problem
from policies.retention import RetentionPlan, Snapshot, apply_retention
from policies.sample import example_policy_yaml
from policies.schema import (
    CommandSource,
    Drill,
    DrillCheck,
    Manifest,
    PathSource,
    Policy,
    Retention,
    Verification,
)

__all__ = [
    "CommandSource",
    "Drill",
    "DrillCheck",
    "Manifest",
    "PathSource",
    "Policy",
    "PolicyError",
    "Problem",
    "Retention",
    "RetentionPlan",
    "Snapshot",
    "Verification",
    "apply_retention",
    "cron_trigger",
    "example_policy_yaml",
    "format_duration",
    "load_policies",
    "load_policy",
    "parse_duration",
    "parse_policy_text",
]
