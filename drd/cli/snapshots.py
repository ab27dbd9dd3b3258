"""``drd snapshots [SYSTEM]``: the snapshots the agents reported, and where copies are."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.services import snapshots as snapshot_service

COLUMNS = ["time", "id", "system", "status", "files", "size", "copies"]
"""``status``: ``unconfirmed`` (reported, not yet seen in the stores: it does not count
yet), ``active``, ``rejected`` (the stores do not hold it) or ``forgotten``."""


def _copies(copies: dict[str, dict]) -> str:
    parts = []
    for name, copy in copies.items():
        missing = copy.get("missing_objects")
        suffix = f"({missing})" if copy["state"] != "present" and missing else ""
        parts.append(f"{name}:{copy['state']}{suffix}")
    return " ".join(parts)


def _size(count: int | None) -> str | None:
    if count is None:
        return None
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None  # not reached


@click.command("snapshots")
@home_option
@click.argument("system", required=False)
@json_option
@click.pass_obj
def snapshots_command(state: CliState, system: str | None, as_json: bool) -> None:
    """List snapshots (all, or SYSTEM's), oldest first, with their status (unconfirmed
    reports do not count yet; rejected ones never will) and each store's copy state.

    With --server: the snapshots of the systems the token may see, through the API
    (forgotten ones left out)."""
    if state.remote is not None:
        _remote_snapshots(state.remote, system, as_json)
        return
    views = snapshot_service.list_snapshots(state.catalog(), system)
    if as_json:
        output.emit_json([view.as_dict() for view in views])
        return
    rows = [{"time": view.time, "id": view.short_id, "system": view.system,
             "status": view.status, "files": view.files, "size": _size(view.bytes),
             "copies": _copies(view.copies) + (" (partial)" if view.partial else "")}
            for view in views]
    output.emit_table(rows, COLUMNS, empty="no snapshots yet")


def _remote_snapshots(options, system: str | None, as_json: bool) -> None:
    from drd.cli.remote import RemoteCentre, system_path

    found = []
    with RemoteCentre(options) as centre:
        names = [system] if system else [item["name"] for item in
                                         centre.pages("/v1/systems")]
        for name in names:
            for snapshot in centre.pages(system_path(name, "snapshots")):
                found.append(snapshot | {"system": name})
    found.sort(key=lambda snapshot: (snapshot["time"], snapshot["system"]))
    if as_json:
        output.emit_json(found)
        return
    rows = [{"time": snapshot["time"], "id": snapshot["id"][:8], "system": snapshot["system"],
             "status": snapshot["status"], "files": snapshot["file_count"],
             "size": _size(snapshot["size_bytes"]),
             "copies": " ".join(f"{store}:{state}"
                                for store, state in sorted(snapshot["copies"].items()))
             + (" (partial)" if snapshot["partial"] else "")}
            for snapshot in found if snapshot["status"] != "forgotten"]
    output.emit_table(rows, COLUMNS, empty="no snapshots yet")
