"""Applying policies to the catalog: validated first, then all or nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from os import PathLike

import sqlalchemy as sa

from drd.catalog import Catalog, audit
from drd.catalog.models import Policy as PolicyRow
from drd.services import stores as store_service
from policies import Policy, load_policies
from policies.rules import StoreFacts


@dataclass(frozen=True)
class Applied:
    name: str
    file: str
    version: int
    change: str  # "created", "updated" or "unchanged"

    def as_dict(self) -> dict:
        return {"policy": self.name, "file": self.file, "version": self.version,
                "change": self.change}


def validate(paths: Iterable[str | PathLike], store_regions: Mapping[str, str] | None,
             store_facts: Mapping[str, StoreFacts] | None = None) -> list[Policy]:
    """Load and validate policy files; raises :class:`policies.PolicyError` listing all
    problems of all files."""
    return load_policies(paths, store_regions=store_regions, store_facts=store_facts)


def apply(catalog: Catalog, paths: Iterable[str | PathLike], store_regions: Mapping[str, str],
          actor: str = "cli") -> list[Applied]:
    """Validate every file against the registered stores, then store them in one transaction.

    Raises :class:`policies.PolicyError` (nothing applied) if any file is invalid, the
    credential rules included (:func:`drd.services.stores.store_facts`). A policy whose
    text did not change keeps its version. Systems' keys for stores the change adds or
    removes are made or disabled by the leader's next reconciliation
    (:mod:`drd.credentials.reconcile`, every 20 s).
    """
    loaded = load_policies(paths, store_regions=store_regions,
                           store_facts=store_service.store_facts(catalog))
    results = []
    with catalog.session() as session:
        for policy in loaded:
            row = session.scalar(sa.select(PolicyRow).where(PolicyRow.name == policy.name))
            document = policy.model_dump(mode="json")
            if row is None:
                row = PolicyRow(name=policy.name, document=document,
                                source_text=policy.source_text, sha256=policy.source_sha256,
                                version=1)
                session.add(row)
                change = "created"
            elif row.sha256 == policy.source_sha256:
                change = "unchanged"
            else:
                row.document = document
                row.source_text = policy.source_text
                row.sha256 = policy.source_sha256
                row.version += 1
                row.applied_at = datetime.now(UTC)
                change = "updated"
            if change != "unchanged":
                audit.record(session, actor, f"policy.{change.removesuffix('d')}",
                             policy.name, file=str(policy.source_path),
                             sha256=policy.source_sha256)
            session.flush()
            results.append(Applied(policy.name, str(policy.source_path), row.version, change))
    return results


def describe(row: PolicyRow) -> dict:
    document = row.document
    return {
        "name": row.name,
        "version": row.version,
        "sha256": row.sha256,
        "applied_at": row.applied_at,
        "schedule": document.get("schedule"),
        "stores": document.get("stores"),
        "min_copies": document.get("min_copies"),
        "rpo": document.get("rpo"),
    }


def policy_rows(catalog: Catalog) -> list[PolicyRow]:
    with catalog.session() as session:
        return list(session.scalars(sa.select(PolicyRow).order_by(PolicyRow.name)))
