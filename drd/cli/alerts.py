"""``drd alerts``: what an operator must see now (open alerts), newest first."""

from __future__ import annotations

import os

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.errors import UserError
from drd.services import alerts as alert_service


@click.group("alerts", invoke_without_command=True)
@home_option
@click.option("--all", "show_all", is_flag=True, help="Resolved alerts too.")
@json_option
@click.pass_context
def alerts_command(context: click.Context, show_all: bool, as_json: bool) -> None:
    """List open alerts (RPO, failed backups, stores down, replication lag, damage, tamper,
    drills, Object Lock; see docs/alerts.md), or evaluate the rules now (check)."""
    if context.invoked_subcommand is not None:
        return
    state: CliState = context.obj
    views = alert_service.list_alerts(state.catalog(), open_only=not show_all)
    if as_json:
        output.emit_json([view.as_dict() for view in views])
        return
    rows = [{"id": view.id, "since": view.opened_at, "kind": view.kind,
             "system": view.system, "store": view.store, "times": view.count,
             "state": "resolved" if view.resolved_at else "open", "message": view.message}
            for view in views]
    output.emit_table(rows, ["id", "since", "kind", "system", "store", "times", "state",
                             "message"], empty="no open alerts")


@alerts_command.command("check")
@home_option
@click.option("--no-probe", is_flag=True, help="Do not probe the stores first.")
@json_option
@click.pass_obj
def check_command(state: CliState, no_probe: bool, as_json: bool) -> None:
    """Probe the stores and evaluate the alert rules now, as the daemon's leader does
    every minute; print the alerts raised and resolved."""
    from drd.alerting.evaluate import run_rules
    from drd.alerting.probe import probe_stores
    from drd.alerting.rules import rule_settings

    try:
        settings = rule_settings(state.config())
    except ValueError as error:
        raise UserError(str(error)) from None
    probed = [] if no_probe else probe_stores(state.catalog(), state.master_key())
    done = run_rules(state.catalog(), settings)
    if as_json:
        output.emit_json({"probed": [{"store": result.name, "reachable": result.reachable,
                                      "error": result.error} for result in probed]}
                         | done.as_dict())
        return
    lines = ([f"store {result.name}: "
              + ("reachable" if result.reachable else f"DOWN: {result.error}")
              for result in probed]
             + [f"raised {alert.kind}: {alert.message}" for alert in done.raised]
             + [f"resolved {alert.kind}: {alert.message}" for alert in done.resolved]
             or ["no change"])
    for line in lines:
        output.echo(line)


@alerts_command.command("resolve")
@home_option
@click.argument("alert_id", metavar="ID", type=int)
@click.option("--note", default="", metavar="TEXT",
              help="What was found or done, for the audit log.")
@click.pass_obj
def resolve_command(state: CliState, alert_id: int, note: str) -> None:
    """Resolve the open alert ID by hand (the id drd alerts shows), once its cause has
    been looked into: for alerts nothing resolves by itself, such as forged_report or
    tamper. An alert of the rules comes back at their next pass if its cause remains.
    Audited."""
    view = alert_service.resolve_by_operator(state.catalog(), alert_id,
                                             actor=f"cli:{_user()}", note=note)
    output.echo(f"resolved alert {view.id} ({view.kind}"
                + (f", {view.system}" if view.system else "") + f"): {view.message}")


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


@alerts_command.command("test-channel")
@home_option
@click.argument("name")
@click.pass_obj
def test_channel_command(state: CliState, name: str) -> None:
    """Send a test notice (kind "test") on the alert channel NAME of drd.yaml now."""
    from drd.alerting.notifier import send_test
    from drd.alerting.settings import alert_settings
    from drd.catalog.types import utcnow

    config = state.config()
    send_test(alert_settings(config.alerts, centre_url=config.public_url), name, utcnow())
    output.echo(f"test notice delivered to {name}")
