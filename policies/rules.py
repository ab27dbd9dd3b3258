"""Rules across fields, checked once a policy has passed the schema.

- ``min_copies`` is no more than the number of stores;
- the stores span at least two regions, unless ``single_region_ok: true``: one store
  is always one region; with the stores' regions known (``store_regions``, from the
  catalog) every store must exist and their regions are counted;
- with the stores' facts known (``store_facts``): a store where every agent gets the
  store's own keys needs ``allow_shared_credentials: true``; a store that cannot refuse a
  system's overwrite or delete (SeaweedFS) needs Object Lock there (the store made with
  ``--object-lock`` and ``object_lock_days`` above 0), so the good versions survive;
- the RPO is not shorter than the longest gap between scheduled backups (the system
  would be late before every backup);
- ``object_lock_days`` does not outlive the retention (``policies.object_lock``);
- the drill schedule fires often enough that rotating through the stores drills each
  of them within ``drill.period``: after any drill, at least as many drills as there
  are stores follow within the period (so the store drilled comes round again in
  time). Reported at ``drill.period`` when it is written, else at ``drill.schedule``.

Pure: the stores' regions are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from policies.cron import fewest_runs_after_a_run, longest_gap
from policies.durations import format_duration
from policies.object_lock import object_lock_problem
from policies.problems import PathTuple
from policies.schema import Policy

RuleProblem = tuple[PathTuple, str]
"""A broken rule: the field it is reported at, and the message."""



@dataclass(frozen=True)
class StoreFacts:
    """What the rules need to know of a registered store (from the catalog).

    ``credentials``: its broker (``seaweedfs``, ``aws-iam``, ``shared``; None: not
    determined yet); ``object_lock``: its bucket has Object Lock; ``needs_object_lock``:
    it cannot refuse a system's overwrite or delete by itself.
    """

    credentials: str | None
    object_lock: bool
    needs_object_lock: bool


_TWO_REGIONS = "name stores in at least two regions, or set single_region_ok: true"


def _store_problems(policy: Policy, store_regions: Mapping[str, str] | None) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    if policy.min_copies > len(policy.stores):
        problems.append(
            (("min_copies",), f"is {policy.min_copies} but only {len(policy.stores)} "
             "store(s) are named; name more stores or lower min_copies")
        )
    if store_regions is not None:
        known = ", ".join(sorted(store_regions)) or "none yet"
        for index, store in enumerate(policy.stores):
            if store not in store_regions:
                problems.append(
                    (("stores", index), f"unknown store {store!r} (known: {known}); "
                     "add it with `drd store add` or fix the name")
                )
        if problems or policy.single_region_ok:
            return problems
        regions = {store_regions[store] for store in policy.stores}
        if len(regions) < 2:
            problems.append(
                (("stores",), f"every store is in region {regions.pop()!r}; {_TWO_REGIONS}")
            )
    elif len(policy.stores) < 2 and not policy.single_region_ok:
        problems.append((("stores",), f"one store is one region; {_TWO_REGIONS}"))
    return problems


def _credential_problems(policy: Policy, store_facts: Mapping[str, StoreFacts]
                         ) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    for index, name in enumerate(policy.stores):
        facts = store_facts.get(name)
        if facts is None:
            continue
        if facts.credentials is None:
            problems.append((("stores", index), f"store {name!r}: drd does not know yet how to "
                             f"give systems keys of their own there; run `drd store check "
                             f"{name}` first"))
        elif facts.credentials == "shared":
            if not policy.allow_shared_credentials:
                problems.append((("stores", index), f"store {name!r} gives every agent the "
                                 "store's own keys: any one compromised system could read, "
                                 "overwrite and delete every repository there; set "
                                 "allow_shared_credentials: true to accept that, or use an "
                                 "S3 store where drd makes each system's own keys"))
        elif facts.needs_object_lock and not (facts.object_lock
                                              and policy.object_lock_days > 0):
            missing = ("the store has no Object Lock (add a store with --object-lock)"
                       if not facts.object_lock else "object_lock_days is 0")
            problems.append((("stores", index), f"store {name!r} cannot refuse a system's "
                             f"overwrite of its own objects ({facts.credentials}), so the "
                             "policy must use Object Lock there to keep the good versions: "
                             f"{missing}"))
    return problems


def _rpo_problems(policy: Policy, gap: timedelta) -> list[RuleProblem]:
    if gap <= policy.rpo:
        return []
    return [(("rpo",), f"{format_duration(policy.rpo)} is shorter than the "
             f"{format_duration(gap)} between scheduled backups ({policy.schedule!r}); "
             "the system would be late before every backup")]


def _drill_problems(policy: Policy) -> list[RuleProblem]:
    drill = policy.drill
    if drill is None:
        return []
    stores = len(policy.stores)
    runs = fewest_runs_after_a_run(drill.schedule, drill.period, enough=stores)
    if runs >= stores:
        return []
    field = "period" if "period" in drill.model_fields_set else "schedule"
    times = {0: "does not fire", 1: "fires only once"}.get(runs, f"fires only {runs} times")
    return [(("drill", field), f"the schedule {drill.schedule!r} {times} in the "
             f"{format_duration(drill.period)} after a drill, but {stores} store(s) must "
             f"each be drilled within {format_duration(drill.period)}; drill more often "
             "or lengthen drill.period")]


def check_policy(policy: Policy, store_regions: Mapping[str, str] | None = None,
                 store_facts: Mapping[str, StoreFacts] | None = None) -> list[RuleProblem]:
    """Every cross-field rule ``policy`` breaks, as ``(field path, message)``; ``[]`` if none.

    ``store_regions`` maps each known store name to its region; None skips the checks
    that need it (unknown stores, counting regions). ``store_facts`` (None: skipped) lets
    the credential rules run.
    """
    gap = longest_gap(policy.schedule)
    problems = _store_problems(policy, store_regions)
    if store_facts is not None:
        problems += _credential_problems(policy, store_facts)
    problems += _rpo_problems(policy, gap)
    lock = object_lock_problem(policy.object_lock_days, policy.retention, gap)
    if lock:
        problems.append((("object_lock_days",), lock))
    problems += _drill_problems(policy)
    return problems
