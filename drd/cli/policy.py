"""``drd policy validate|apply|list``: what is kept where and for how long."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.config import is_initialised
from drd.console import output
from drd.services import policies as policy_service
from drd.services import stores
from policies import PolicyError

_FILES = click.argument("files", nargs=-1, required=True,
                        type=click.Path(dir_okay=False))


def _report_problems(error: PolicyError, as_json: bool) -> None:
    if as_json:
        output.emit_json({"valid": False, "problems": [
            {"file": p.file, "line": p.line, "field": p.path, "message": p.message}
            for p in error.problems]})
    raise error


@click.group("policy")
def policy_group() -> None:
    """Policies: what to back up, where to keep it, for how long, how to prove it."""


@policy_group.command("validate")
@home_option
@_FILES
@json_option
@click.pass_obj
def validate_command(state: CliState, files: tuple[str, ...], as_json: bool) -> None:
    """Check policy files; exit 2 with every problem as file:line: field: message.

    With an initialised home the store names and regions are checked against the
    centre's stores too. Nothing is applied.
    """
    regions = facts = None
    if is_initialised(state.home):
        regions = stores.store_regions(state.catalog())
        facts = stores.store_facts(state.catalog())
    try:
        loaded = policy_service.validate(files, regions, facts)
    except PolicyError as error:
        _report_problems(error, as_json)
    if as_json:
        output.emit_json({"valid": True, "stores_checked": regions is not None, "policies": [
            {"policy": p.name, "file": str(p.source_path)} for p in loaded]})
        return
    for policy in loaded:
        output.echo(f"{policy.source_path}: policy {policy.name} is valid")
    if regions is None:
        output.say(f"note: {state.home} is not initialised, so store names and regions "
                   "were not checked")


@policy_group.command("apply")
@home_option
@_FILES
@json_option
@click.pass_obj
def apply_command(state: CliState, files: tuple[str, ...], as_json: bool) -> None:
    """Validate, then apply all the files at once, or none of them."""
    catalog = state.catalog()
    try:
        applied = policy_service.apply(catalog, files, stores.store_regions(catalog))
    except PolicyError as error:
        _report_problems(error, as_json)
    if as_json:
        output.emit_json([item.as_dict() for item in applied])
        return
    for item in applied:
        output.echo(f"policy {item.name}: {item.change} (version {item.version}, "
                    f"{item.file})")


@policy_group.command("list")
@home_option
@json_option
@click.pass_obj
def list_command(state: CliState, as_json: bool) -> None:
    """List the applied policies."""
    rows = [policy_service.describe(row) for row in policy_service.policy_rows(state.catalog())]
    if as_json:
        output.emit_json(rows)
        return
    output.emit_table(rows, ["name", "version", "schedule", "stores", "min_copies", "rpo",
                             "applied_at"],
                      empty="no policies yet: apply one with 'drd policy apply FILE'")
