"""Keyless verification of the stored copies, with a coverage ledger, and self-heal.

:mod:`drd.verification.select` decides (pure): which objects a run reads, its byte
budget, and the coverage of a store. :mod:`drd.verification.run` does the work:
:func:`verify` reads objects back, checks ``sha256(bytes) == name``, heals what is wrong
from a good copy and records it all in the catalog; :func:`coverage_report` says, per
store, how much is proven intact.
"""

from drd.verification.run import (
    Finding,
    StoreVerification,
    VerificationReport,
    coverage_report,
    verify,
)
from drd.verification.select import Coverage, LedgerEntry, default_budget, parse_size

__all__ = [
    "Coverage",
    "Finding",
    "LedgerEntry",
    "StoreVerification",
    "VerificationReport",
    "coverage_report",
    "default_budget",
    "parse_size",
    "verify",
]
