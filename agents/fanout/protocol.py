"""restic's REST protocol as the fan-out endpoint speaks it: pure parsing and formatting.

No I/O here. What restic 0.14 sends and expects (see ENVIRONMENT.md, "restic's REST
backend") is turned into values the server acts on:

- a request path becomes a :class:`RequestTarget` (the repository, ``config``, a listing
  of one object type, or one object), and an object its store key in restic's S3 layout
  (``data/<first two hex>/<id>``, ``index/<id>``, ...) by :func:`object_key`;
- a ``Range`` header becomes a :class:`ByteRange` (:func:`parse_range`);
- a listing becomes the JSON body restic reads (:func:`listing_body`), v2 with sizes;
- the per-run credential is checked by :func:`credentials_match`;
- an upload's content is checked against its content-addressed name by
  :func:`content_matches_name`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

REST_V1 = "application/vnd.x.restic.rest.v1"
REST_V2 = "application/vnd.x.restic.rest.v2"

CONFIG_KEY = "config"
DATA = "data"
LOCKS = "locks"
# The object types restic's REST backend names in a path; all are content-addressed.
OBJECT_TYPES = frozenset({DATA, "keys", LOCKS, "snapshots", "index"})

_OBJECT_NAME = re.compile(r"[0-9a-f]{64}")

TargetKind = Literal["repository", "config", "listing", "object"]


class UnknownPath(ValueError):
    """The path names nothing in a repository (answered 404)."""


class InvalidName(ValueError):
    """The path names an object type with a name restic never makes (answered 400)."""


class RangeNotSatisfiable(ValueError):
    """The ``Range`` asks for bytes past the end of the object (answered 416 with
    ``Content-Range: bytes */<size>``); ``size`` is the object's size."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


@dataclass(frozen=True)
class RequestTarget:
    """What a request path names.

    ``kind`` is ``repository`` (``/``; ``create`` is true for ``/?create=true``),
    ``config`` (``/config``), ``listing`` (``/<type>/``) or ``object``
    (``/<type>/<name>``); ``object_type`` and ``name`` are set where they apply.
    """

    kind: TargetKind
    object_type: str | None = None
    name: str | None = None
    create: bool = False

    @property
    def key(self) -> str:
        """The store key of ``config`` or of an object. Raises ValueError for the others."""
        if self.kind == "config":
            return CONFIG_KEY
        if self.kind == "object":
            return object_key(self.object_type, self.name)
        raise ValueError(f"a {self.kind} has no store key")


def parse_target(raw_path: str) -> RequestTarget:
    """Parse a request's path (with any query) into a :class:`RequestTarget`.

    The repository is the URL's root: the endpoint serves one repository per run, so
    the path before the type is empty (``rest:http://drd:TOKEN@127.0.0.1:PORT/``).

    Raises:
        UnknownPath: anything else than ``/``, ``/config``, ``/<type>/``,
            ``/<type>/<name>`` with a known type.
        InvalidName: ``/<type>/<name>`` whose name is not 64 lowercase hex digits.
    """
    path, _, query = raw_path.partition("?")
    if path == "/":
        create = parse_qs(query).get("create") == ["true"]
        return RequestTarget("repository", create=create)
    if path == "/config":
        return RequestTarget("config")
    parts = path.split("/")
    # "/data/" -> ["", "data", ""]; "/data/<id>" -> ["", "data", "<id>"]
    if len(parts) != 3 or parts[0] != "" or parts[1] not in OBJECT_TYPES:
        raise UnknownPath(f"no such repository path: {path!r}")
    object_type, name = parts[1], parts[2]
    if name == "":
        return RequestTarget("listing", object_type=object_type)
    if not _OBJECT_NAME.fullmatch(name):
        raise InvalidName(f"{object_type} names are 64 lowercase hex digits, not {name!r}")
    return RequestTarget("object", object_type=object_type, name=name)


def object_key(object_type: str | None, name: str | None) -> str:
    """The store key of object ``name`` of ``object_type`` in restic's S3 layout.

    Data objects sit under a directory named by their first two hex digits
    (``data/ab/abcd...``), so that plain ``restic -r s3:...`` opens any store directly;
    the other types are flat (``index/<id>``).

    Raises:
        ValueError: an unknown type or a name that is not 64 lowercase hex digits.
    """
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"unknown object type {object_type!r}")
    if name is None or not _OBJECT_NAME.fullmatch(name):
        raise ValueError(f"invalid object name {name!r}")
    if object_type == DATA:
        return f"{DATA}/{name[:2]}/{name}"
    return f"{object_type}/{name}"


def listing_prefix(object_type: str) -> str:
    """The store prefix under which objects of ``object_type`` lie (``data/`` spans the
    two-hex subdirectories)."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"unknown object type {object_type!r}")
    return f"{object_type}/"


def name_of_key(object_type: str, key: str) -> str | None:
    """The object name restic knows for store ``key`` of ``object_type``, or None when
    the key is not such an object (a stray file, a data object in the wrong
    subdirectory): listings leave those out, so restic never asks for them."""
    try:
        name = key.rsplit("/", 1)[-1]
        return name if object_key(object_type, name) == key else None
    except ValueError:
        return None


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` to ``start + length`` of an object; ``partial`` when they are not
    the whole object (answered 206 with a Content-Range), else 200."""

    start: int
    length: int
    partial: bool

    def content_range(self, size: int) -> str:
        """The Content-Range header value for this range of an object of ``size`` bytes."""
        return f"bytes {self.start}-{self.start + self.length - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange:
    """The bytes a ``Range`` header asks of an object of ``size`` bytes.

    One range per request, as restic sends (``bytes=A-B``, ``bytes=A-``, ``bytes=-N``);
    an end past the object is cut to its end (RFC 9110). A missing header, or one this
    function does not understand (another unit, several ranges), means the whole object,
    as RFC 9110 allows a server to ignore a Range.

    Raises:
        RangeNotSatisfiable: the range starts at or past the end of a non-empty object,
            or asks for the last 0 bytes.
    """
    whole = ByteRange(0, size, False)
    if not header:
        return whole
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return whole
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return whole
    if first == "":
        if last == "":
            return whole
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(f"an empty suffix range of an object of {size} bytes", size)
        start = max(0, size - suffix)
        end = size - 1
    else:
        start = int(first)
        end = size - 1 if last == "" else min(int(last), size - 1)
        if last != "" and int(last) < start:
            return whole  # an invalid range is ignored (RFC 9110)
        if start >= size:
            if size == 0 and start == 0:
                return whole
            raise RangeNotSatisfiable(f"range starts at byte {start} of {size}", size)
    length = end - start + 1
    return ByteRange(start, length, partial=length != size)


def accepts_v2(accept: str | None) -> bool:
    """True when the ``Accept`` header asks for protocol v2 (listings with sizes)."""
    return bool(accept) and REST_V2 in accept


def listing_body(entries: Iterable[tuple[str, int]], *, v2: bool) -> tuple[bytes, str]:
    """The JSON body and Content-Type of a listing of ``(name, size)`` entries.

    v2: ``[{"name": ..., "size": ...}]`` with :data:`REST_V2` (restic then trusts the
    sizes); v1: ``["name", ...]`` with :data:`REST_V1` (restic then HEADs each object).
    Entries come out sorted by name, each name once.
    """
    unique = dict(entries)
    names = sorted(unique)
    if v2:
        document: list = [{"name": name, "size": unique[name]} for name in names]
        content_type = REST_V2
    else:
        document = names
        content_type = REST_V1
    return json.dumps(document, separators=(",", ":")).encode(), content_type


def basic_credentials(user: str, password: str) -> str:
    """The ``Authorization`` header value for HTTP Basic ``user``/``password``."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def credentials_match(header: str | None, user: str, password: str) -> bool:
    """True when ``header`` (an ``Authorization`` value) is HTTP Basic with exactly
    ``user`` and ``password``; compared in constant time. Anything else is False."""
    if not header:
        return False
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = f"{user}:{password}".encode()
    return hmac.compare_digest(decoded, expected)


def content_matches_name(target: RequestTarget, digest_hex: str) -> bool:
    """True when an upload's SHA-256 (``digest_hex``) fits its name.

    Objects are named by the SHA-256 of their bytes; ``config`` has a fixed name and
    anything goes. A mismatch means a corrupt upload, which must not be acknowledged.
    """
    if target.kind == "config":
        return True
    return target.kind == "object" and hmac.compare_digest(digest_hex, target.name or "")


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` in lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def may_delete(target: RequestTarget) -> bool:
    """Only restic's lock files may be deleted through the endpoint: everything else is
    backup data that an agent never removes (retention is the centre's job)."""
    return target.kind == "object" and target.object_type == LOCKS


def takes_retention(key: str) -> bool:
    """Whether an object under ``key`` gets the policy's Object Lock retention: every
    object except restic's lock files, which restic deletes at the end of each run."""
    return not key.startswith(f"{LOCKS}/")
