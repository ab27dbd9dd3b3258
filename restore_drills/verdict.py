"""Whether a drill passed: a pure function of its check results and the targets.

A drill passes when every check it ran passed, the restore took no longer than the RTO
target, and (when it drilled the newest restore point) that restore point was no older
than the RPO target. The RTO is the time to get the data back and proven: unsealing the
password, bringing back what delete markers or overwrites covered in the store (where
it keeps versions: recovering from that store needs it), restoring, and restic's
verification of the restored files; the manifest
comparison, the negative control and the application checks are evidence, not part of
the recovery, and are timed separately.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from restore_drills.checks import CheckOutcome

RTO_PHASES = ("unseal", "repair", "restore", "verify")
"""The phases whose sum is the drill's RTO."""

REQUIRED_CHECKS = ("restic_verify", "file_count", "bytes", "manifest_signature", "manifest",
                   "negative_control")
"""Checks every drill must run and pass; a missing one fails the drill."""


def rto_of(phases: Mapping[str, float]) -> float:
    """The RTO a drill measured: the sum of :data:`RTO_PHASES` (pure)."""
    return sum(phases.get(phase, 0.0) for phase in RTO_PHASES)


def format_seconds(seconds: float) -> str:
    """``42.1 s``, ``12m 3s``, ``3h 2m``, ``2d 4h``: a duration for a detail line."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


@dataclass(frozen=True)
class Targets:
    rto: dt.timedelta
    rpo: dt.timedelta
    judge_rpo: bool = True
    """False when the drill restored another restore point than the newest (``oldest``,
    or one chosen by id): its age is reported, not judged."""


@dataclass(frozen=True)
class Verdict:
    """``passed``, the reasons it did not (one per failed or missing check), and every
    check's outcome including ``rto`` and ``rpo``, in report order."""

    passed: bool
    reasons: tuple[str, ...] = ()
    checks: Mapping[str, CheckOutcome] = field(default_factory=dict)


def decide(checks: Mapping[str, CheckOutcome], rto_seconds: float, rpo_seconds: float,
           targets: Targets, *, stopped_early: str | None = None) -> Verdict:
    """The verdict of a drill (pure).

    ``checks`` in the order they ran; ``stopped_early`` names why the drill stopped
    before running every check (a store that could not be read, a sandbox too small):
    then it fails, the RTO is not judged (no restore happened), the missing required
    checks are not listed, and ``stopped_early`` is the reason only when no failed check
    already says it.
    """
    judged: dict[str, CheckOutcome] = dict(checks)
    rto_target = targets.rto.total_seconds()
    if stopped_early is None:
        judged["rto"] = CheckOutcome(
            rto_seconds <= rto_target,
            f"{format_seconds(rto_seconds)} "
            f"{'within' if rto_seconds <= rto_target else 'over'} the target "
            f"{format_seconds(rto_target)}")
    rpo_target = targets.rpo.total_seconds()
    if targets.judge_rpo:
        judged["rpo"] = CheckOutcome(
            rpo_seconds <= rpo_target,
            f"restore point {format_seconds(rpo_seconds)} old at the drill, "
            f"{'within' if rpo_seconds <= rpo_target else 'over'} the target "
            f"{format_seconds(rpo_target)}")
    reasons = []
    if stopped_early is None:
        reasons.extend(f"{name}: did not run" for name in REQUIRED_CHECKS
                       if name not in judged)
    reasons.extend(f"{name}: {outcome.detail}" for name, outcome in judged.items()
                   if not outcome.passed)
    if stopped_early is not None and not reasons:
        reasons.append(stopped_early)
    return Verdict(passed=not reasons, reasons=tuple(reasons), checks=judged)
