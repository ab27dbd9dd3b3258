"""``drd token``: API tokens for people (admins, operators, system owners)."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.errors import UserError
from drd.services import tokens
from policies import parse_duration


@click.group("token")
def token_group() -> None:
    """API tokens: admin (everything, and changes), operator (reads everything), owner
    (reads its departments' or systems' data, asks for their backups and restores)."""


@token_group.command("create")
@home_option
@click.option("--role", required=True, type=click.Choice(tokens.PEOPLE_ROLES),
              help="What the token may do.")
@click.option("--name", metavar="NAME",
              help="The token's unique name, as the audit log shows it (default ROLE-N).")
@click.option("--department", "departments", multiple=True, metavar="D",
              help="Owner tokens: a department whose systems it may see (repeatable).")
@click.option("--system", "systems", multiple=True, metavar="S",
              help="Owner tokens: a system it may see (repeatable).")
@click.option("--expires", metavar="DURATION",
              help="How long the token is valid (e.g. 90d); default: until revoked.")
@click.pass_obj
def create_command(state: CliState, role: str, name: str | None, departments: tuple[str, ...],
                   systems: tuple[str, ...], expires: str | None) -> None:
    """Create a token and print it, alone on stdout, once: the centre keeps only its hash."""
    expires_in = None
    if expires is not None:
        try:
            expires_in = parse_duration(expires)
        except ValueError as error:
            raise UserError(f"--expires: {error}") from None
    created = tokens.create_token(state.catalog(), role=role, name=name,
                                  departments=departments, systems=systems,
                                  expires_in=expires_in, actor="cli")
    view = created.view
    output.echo(created.token.reveal())
    scope = ", ".join([*(f"department {d}" for d in view.departments),
                       *(f"system {s}" for s in view.systems)]) or "every system"
    until = f"until {view.expires_at:%Y-%m-%d %H:%M}Z" if view.expires_at else "until revoked"
    output.say(f"token {view.name} ({view.role}: {scope}), valid {until}; it is not shown "
               "again")


@token_group.command("list")
@home_option
@click.option("--all", "show_all", is_flag=True,
              help="Also revoked tokens, and the agents' and enrollment tokens.")
@json_option
@click.pass_obj
def list_command(state: CliState, show_all: bool, as_json: bool) -> None:
    """List tokens (never their values): name, role, scope, state, expiry."""
    roles = (*tokens.PEOPLE_ROLES, "agent", "enrollment") if show_all else tokens.PEOPLE_ROLES
    views = tokens.list_tokens(state.catalog(), roles=roles, include_revoked=show_all)
    if as_json:
        output.emit_json([view.as_dict() for view in views])
        return
    rows = [{"id": view.id, "name": view.name, "role": view.role,
             "scope": ", ".join([*view.departments, *view.systems]) or "-",
             "state": view.state, "created": view.created_at, "expires": view.expires_at}
            for view in views]
    output.emit_table(rows, ["id", "name", "role", "scope", "state", "created", "expires"],
                      empty="no tokens (drd token create --role ...)")


@token_group.command("revoke")
@home_option
@click.argument("name")
@click.pass_obj
def revoke_command(state: CliState, name: str) -> None:
    """Revoke the token NAME (or ID) at once."""
    view = tokens.revoke_token(state.catalog(), name, actor="cli")
    output.say(f"token {view.name} ({view.role}) is revoked")
    if view.role in ("agent", "enrollment"):
        from drd.cli.system import apply_keys
        from drd.services import credentials

        # an agent cut off from the centre must be cut off from the stores too, and so
        # must whoever previewed an enrollment token that will not be used
        systems = [credentials.system_id(state.catalog(), name) for name in view.systems]
        apply_keys(state, systems)
