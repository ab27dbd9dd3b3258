"""drd: disaster-recovery and backup orchestration on restic.

The flow reads off the packages: ``drd.cli`` -> ``policies`` / ``drd.config`` ->
services (replicate, verify, drill) -> ``drd.restic`` / ``drd.stores`` / ``drd.catalog``.
A module knows the layers below it, never those above.
"""

__version__ = "0.1.0"
