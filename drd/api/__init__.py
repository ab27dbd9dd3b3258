"""The centre's HTTP API (FastAPI), served by ``drd serve``.

- :mod:`drd.api.app`: :func:`~drd.api.app.create_app`, the application factory;
- :mod:`drd.api.routes`: one router per resource (``meta``, ``enrollment``, ``agent``);
  operators' routers join them under ``/v1`` later;
- :mod:`drd.api.auth`: bearer-token dependencies (the agent's system, later roles);
- :mod:`drd.api.errors`: refusals and bad bodies as 4xx with a one-line ``detail``;
- :mod:`drd.api.limits`: the request body size limit;
- :mod:`drd.api.server`: uvicorn with the centre's TLS certificate, logging, signals.

Handlers validate, call a service (:mod:`drd.services`) and shape its answer; the
services decide.
"""
