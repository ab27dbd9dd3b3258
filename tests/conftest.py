"""Fixtures shared by every test layer.

Real components (restic, SeaweedFS, PostgreSQL) are found here. A test that needs one
and cannot find it is skipped with the reason printed -- except under ``CI=true``,
where it fails, so that a green CI always means the real thing ran (restic's
``RESTIC_TEST_DISALLOW_SKIP``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(component: str, available: bool, how_to_get_it: str) -> None:
    """Skip (or, under CI, fail) the calling test unless ``component`` is available."""
    if available:
        return
    message = f"{component} not available: {how_to_get_it}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def restic_binary() -> str:
    """Path of the real restic binary (``DRD_RESTIC`` overrides the PATH lookup)."""
    binary = os.environ.get("DRD_RESTIC") or shutil.which("restic")
    need("restic", binary is not None, "apt-get install -y restic (or make test)")
    return binary


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server the tests may use (``DRD_TEST_DATABASE_URL``)."""
    url = os.environ.get("DRD_TEST_DATABASE_URL")
    need(
        "PostgreSQL",
        bool(url),
        "set DRD_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    return url


def _postgres_schema_url(base_url: str):
    """Create a throw-away schema and return (url using it, drop function)."""
    import sqlalchemy as sa

    schema = f"drd_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url)
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as error:
        admin.dispose()
        need("PostgreSQL", False, f"cannot connect to {base_url}: {error.orig}")
    separator = "&" if "?" in base_url else "?"
    url = f"{base_url}{separator}options=-csearch_path%3D{schema}"

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path: Path) -> str:
    """An empty catalog database: a SQLite file, then a fresh PostgreSQL schema.

    Every catalog test runs once on each (APScheduler parametrises its data stores the
    same way), so the PostgreSQL path is exercised wherever SQLite is.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    base = request.getfixturevalue("postgres_url")
    url, drop = _postgres_schema_url(base)
    try:
        yield url
    finally:
        drop()
