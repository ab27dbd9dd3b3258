"""What the API's handlers use: one :class:`ApiContext` per app, on ``app.state.drd``.

Handlers reach it through the :func:`api_context` dependency (annotate a parameter
``Context``), so a test can build an app on any catalog and clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from drd.catalog import Catalog
from drd.catalog.types import utcnow
from drd.config import Config
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey
from drd.crypto.pem import public_key_pem


@dataclass(repr=False)
class ApiContext:
    """Everything the API's handlers use; built once per app."""

    catalog: Catalog
    keystore: KeyStore
    master_key: MasterKey
    config: Config
    clock: Callable[[], dt.datetime] = utcnow
    _escrow_pem: str | None = field(default=None, init=False)

    def __repr__(self) -> str:
        return f"ApiContext({self.catalog!r}, {self.keystore!r})"

    def now(self) -> dt.datetime:
        return self.clock()

    def escrow_public_key_pem(self) -> str:
        """The escrow public key agents seal their passwords to (read once)."""
        if self._escrow_pem is None:
            self._escrow_pem = public_key_pem(self.keystore.escrow_public_key()).decode()
        return self._escrow_pem


def api_context(request: Request) -> ApiContext:
    """FastAPI dependency: the app's :class:`ApiContext`."""
    return request.app.state.drd


Context = Annotated[ApiContext, Depends(api_context)]
"""A handler parameter annotated ``Context`` receives the :class:`ApiContext`."""
