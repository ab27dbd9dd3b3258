"""The catalog as a stream of JSON lines, and loading such a stream into a new catalog.

What a rebuilt centre needs, and nothing it can find again by itself:

- departments, policies (document, YAML source, digest, version), stores (name, kind,
  URL, endpoint, region, Object Lock, access key id -- **never** their secret keys,
  nor the last probe), systems (sealed passwords, agents' public keys, status), their
  own store keys (ids and states, **never** their secrets),
  tokens (only ever their SHA-256: agents', operators' and owners' tokens keep working),
  snapshots and their copies per store, signed manifests, drills with their signed
  reports, the tombstones of pruned objects (so replication never copies them back),
  and the recorded digests of the objects not named by their hash (``config``, the
  sealed password, manifests: a rebuilt centre checks the stores' copies against them,
  never against each other);
- the centre's settings (``drd.yaml`` without the catalog's URL).

Left out, because the new centre rebuilds them or they are history only: the object
ledger and replicas (the next replication pass lists every store again), jobs (derived
from the policies), job runs, the work queue, alerts and their notifications, daemons,
and the audit log (a rebuilt centre starts a new one, whose first entry records the
recovery).

Lines (UTF-8, one JSON object each)::

    {"kind": "begin", "schema": "<alembic revision>", "created_at": ..., "settings": {...}}
    {"table": "departments", "row": {"id": 1, "name": "parks", "created_at": "..."}}
    ...
    {"kind": "end", "counts": {"departments": 1, ...}}

Rows keep their ids, so references between tables need no mapping and loading holds
one batch of rows in memory, whatever the catalog's size. Datetimes are ISO 8601 in UTC,
binary columns base64. The ``end`` line proves the stream was not cut short.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from drd.catalog import Catalog
from drd.catalog.models import (
    Department,
    Drill,
    Policy,
    RecordedObject,
    Snapshot,
    SnapshotCopy,
    SnapshotManifest,
    Store,
    StoreCredential,
    System,
    Token,
    Tombstone,
)
from drd.catalog.schema import head_revision, is_known_revision
from drd.catalog.types import UTCDateTime
from drd.crypto.errors import CryptoError

BATCH_SIZE = 1000

# (model, columns never copied), in the order rows must be inserted
TABLES: tuple[tuple[type, frozenset[str]], ...] = (
    (Department, frozenset()),
    (Policy, frozenset()),
    (Store, frozenset({"secret_encrypted", "checked_at", "reachable", "check_error"})),
    (System, frozenset()),
    # systems' own store keys, never their secrets: a rebuilt centre replaces each key
    # (drd.credentials.plan) and disables the old one once the agent has its new one
    (StoreCredential, frozenset({"secret_encrypted"})),
    (RecordedObject, frozenset()),
    (Token, frozenset()),
    (Snapshot, frozenset()),
    (SnapshotCopy, frozenset()),
    (SnapshotManifest, frozenset()),
    (Drill, frozenset()),
    (Tombstone, frozenset()),
)
_BY_NAME = {model.__tablename__: (model, skipped) for model, skipped in TABLES}


class DamagedDump(CryptoError):
    """A catalog stream that is not whole or not well-formed (exit 1)."""


@dataclass
class LoadResult:
    """What a load put into the catalog: rows per table, and the copy's own header."""

    counts: dict[str, int] = field(default_factory=dict)
    schema: str = ""
    created_at: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


def dump_lines(catalog: Catalog, settings: dict[str, Any], *,
               now: dt.datetime | None = None) -> Iterator[bytes]:
    """Yield the catalog as JSON lines (bytes, each ending in a newline).

    Reads in one read-only transaction (REPEATABLE READ on PostgreSQL, a WAL snapshot on
    SQLite), so the lines are one consistent state of the catalog, and fetches
    :data:`BATCH_SIZE` rows at a time.
    """
    created = (now or dt.datetime.now(dt.UTC)).isoformat()
    yield _line({"kind": "begin", "schema": head_revision(), "created_at": created,
                 "settings": settings})
    counts: dict[str, int] = {}
    with catalog.read_session() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        for model, skipped in TABLES:
            table = model.__table__
            columns = [column for column in table.columns if column.name not in skipped]
            query = sa.select(*columns).order_by(table.c.id).execution_options(
                yield_per=BATCH_SIZE)
            count = 0
            for row in session.execute(query).mappings():
                yield _line({"table": table.name,
                             "row": {column.name: _encode(column, row[column.name])
                                     for column in columns}})
                count += 1
            counts[table.name] = count
    yield _line({"kind": "end", "counts": counts})


def load_lines(lines: Iterable[bytes], session: Session,
               progress: Callable[[str, int], None] | None = None) -> LoadResult:
    """Insert the rows of a :func:`dump_lines` stream through ``session`` (one
    transaction: the caller commits). Returns what was loaded.

    Raises :class:`DamagedDump` if the stream is malformed, cut short, from an unknown
    (newer) schema, or names a table or column this drd does not copy.
    """
    result = LoadResult()
    pending: list[dict[str, Any]] = []
    pending_table: str | None = None
    order = [model.__tablename__ for model, _ in TABLES]
    seen_end = False

    def flush() -> None:
        nonlocal pending
        if pending:
            session.execute(_BY_NAME[pending_table][0].__table__.insert(), pending)
            result.counts[pending_table] = result.counts.get(pending_table, 0) + len(pending)
            if progress is not None:
                progress(pending_table, result.counts[pending_table])
            pending = []

    for number, raw in enumerate(lines, start=1):
        if seen_end:
            raise DamagedDump(f"catalog copy: data after its end (line {number})")
        try:
            entry = json.loads(raw)
        except ValueError:
            raise DamagedDump(f"catalog copy: line {number} is not JSON") from None
        if number == 1:
            _begin(entry, result)
            continue
        if entry.get("kind") == "end":
            flush()
            _end(entry, result)
            seen_end = True
            continue
        table = entry.get("table")
        if table not in _BY_NAME or not isinstance(entry.get("row"), dict):
            raise DamagedDump(f"catalog copy: line {number} names no known table")
        if table != pending_table:
            flush()
            if pending_table is not None and order.index(table) < order.index(pending_table):
                raise DamagedDump(f"catalog copy: table {table} out of order (line {number})")
            pending_table = table
        pending.append(_decode_row(table, entry["row"], number))
        if len(pending) >= BATCH_SIZE:
            flush()
    if not seen_end:
        raise DamagedDump("catalog copy: cut short (no end line)")
    _reset_sequences(session)
    return result


def _begin(entry: dict[str, Any], result: LoadResult) -> None:
    if entry.get("kind") != "begin" or not isinstance(entry.get("schema"), str):
        raise DamagedDump("catalog copy: no begin line")
    if not is_known_revision(entry["schema"]):
        raise DamagedDump(f"catalog copy: written by a newer drd (schema {entry['schema']}); "
                          "recover with that drd version or a newer one")
    result.schema = entry["schema"]
    result.created_at = str(entry.get("created_at", ""))
    settings = entry.get("settings") or {}
    result.settings = settings if isinstance(settings, dict) else {}


def _end(entry: dict[str, Any], result: LoadResult) -> None:
    expected = entry.get("counts")
    if not isinstance(expected, dict):
        raise DamagedDump("catalog copy: malformed end line")
    for table, count in expected.items():
        if result.counts.get(table, 0) != count:
            raise DamagedDump(f"catalog copy: {table} holds {result.counts.get(table, 0)} "
                              f"rows, its end line says {count}")


def _decode_row(table_name: str, row: dict[str, Any], number: int) -> dict[str, Any]:
    model, skipped = _BY_NAME[table_name]
    columns = model.__table__.columns
    decoded = {}
    for name, value in row.items():
        if name not in columns or name in skipped:
            # an older schema's column that this drd dropped: nothing to put it in
            continue
        try:
            decoded[name] = _decode(columns[name], value)
        except (ValueError, TypeError) as error:
            raise DamagedDump(f"catalog copy: line {number}: {table_name}.{name}: "
                              f"{error}") from None
    return decoded


def _encode(column: sa.Column, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, UTCDateTime):
        return value.isoformat()
    if isinstance(column.type, sa.LargeBinary):
        return base64.b64encode(value).decode()
    return value


def _decode(column: sa.Column, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, UTCDateTime):
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("a datetime without a time zone")
        return parsed
    if isinstance(column.type, sa.LargeBinary):
        return base64.b64decode(value, validate=True)
    return value


def _reset_sequences(session: Session) -> None:
    """Rows were inserted with their ids: PostgreSQL's sequences must move past them
    (SQLite picks max(id) + 1 by itself)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for model, _ in TABLES:
        name = model.__tablename__
        session.execute(sa.text(
            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
            f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {name}"))


def _line(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
