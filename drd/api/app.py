"""The application factory: :func:`create_app` builds the centre's FastAPI app."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from fastapi import FastAPI

from drd import __version__
from drd.api import errors
from drd.api.context import ApiContext
from drd.api.large_bodies import LargeBodyGate
from drd.api.limits import BodySizeLimit
from drd.api.routes import (
    agent,
    alerts,
    audit,
    dashboard,
    drills,
    enrollment,
    jobs,
    meta,
    stores,
    systems,
    whoami,
)
from drd.api.routes import metrics as metrics_routes
from drd.api.routes import restore as restore_routes
from drd.api.routes import status as status_routes
from drd.catalog import Catalog
from drd.catalog.types import utcnow
from drd.config import Config
from drd.crypto.keystore import KeyStore
from drd.crypto.masterkey import MasterKey


def create_app(catalog: Catalog, master_key: MasterKey, config: Config, *,
               keystore: KeyStore | None = None,
               clock: Callable[[], dt.datetime] = utcnow) -> FastAPI:
    """The centre's API on ``catalog``, with the keys in ``config.keys_dir``.

    ``master_key`` decrypts store secrets for assignments; ``keystore`` defaults to
    ``KeyStore(config.keys_dir, master_key)``; ``clock`` gives the current UTC time
    (tests move it). Nothing is opened or checked here: ``/readyz`` says whether the
    catalog is reachable.
    """
    app = FastAPI(
        title="drd",
        version=__version__,
        summary="Disaster-recovery centre: agent protocol (docs/agent-protocol.md)",
        docs_url=None,
        redoc_url=None,
    )
    app.state.drd = ApiContext(catalog=catalog,
                               keystore=keystore or KeyStore(config.keys_dir, master_key),
                               master_key=master_key, config=config, clock=clock)
    errors.install(app)
    # the middleware added last runs first: a large body's sender is authenticated
    # (LargeBodyGate) before its size is checked and its body read (BodySizeLimit)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(LargeBodyGate, context=app.state.drd)
    app.include_router(meta.router)
    app.include_router(dashboard.router)
    app.include_router(enrollment.router, prefix="/v1")
    app.include_router(agent.router, prefix="/v1")
    app.include_router(whoami.router, prefix="/v1")
    for read_routes in (status_routes, systems, stores, drills, jobs, alerts, audit):
        app.include_router(read_routes.router, prefix="/v1")
    app.include_router(restore_routes.router, prefix="/v1")
    app.include_router(metrics_routes.router)
    return app
