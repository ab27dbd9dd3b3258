"""The catalog: what drd knows about departments, systems, stores, snapshots and runs.

- :mod:`drd.catalog.models`: the tables.
- :mod:`drd.catalog.session`: :class:`Catalog`, the one session factory.
- :mod:`drd.catalog.schema`: :func:`migrate`, :func:`head_revision`, :func:`schema_version`.
- :mod:`drd.catalog.audit`: :func:`record`, the append-only audit log.
"""

from drd.catalog.schema import head_revision, migrate, schema_version
from drd.catalog.session import Catalog, make_engine

__all__ = ["Catalog", "head_revision", "make_engine", "migrate", "schema_version"]
