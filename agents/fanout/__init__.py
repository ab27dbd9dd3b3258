"""The agent's fan-out endpoint: restic's REST protocol on 127.0.0.1, writing every
object to all of a policy's stores in parallel (issue 3, point 3).

:class:`FanoutEndpoint` runs one restic run's server; :class:`FanoutReport` and
:class:`StoreOutcome` say afterwards what each store holds. The pieces, from the wire
inwards: :mod:`.server` (HTTP), :mod:`.protocol` (parsing, pure), :mod:`.reader` and
:mod:`.writer` (stores), :mod:`.durability` (the 200-or-500 decision, pure),
:mod:`.ledger` (who holds what) and :mod:`.report`.
"""

from agents.fanout.endpoint import FanoutEndpoint
from agents.fanout.report import FanoutReport, StoreOutcome

__all__ = ["FanoutEndpoint", "FanoutReport", "StoreOutcome"]
