"""``drd system token|retire|rotate-credentials``: a department's system, its enrollment
and its own store keys."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.crypto.keystore import KeyStore
from drd.errors import DrdError, UserError
from drd.services import enrollment
from policies import parse_duration


def _duration(text: str):
    try:
        return parse_duration(text)
    except ValueError as error:
        raise UserError(f"--expires: {error}") from None


@click.group("system")
def system_group() -> None:
    """Department systems: enrollment of their agents, and their own store keys."""


def apply_keys(state: CliState, systems: list[int] | None, as_json: bool = False) -> dict:
    """Carry out the key plan at once for ``systems`` (all: None) and say what happened;
    what a store refuses or cannot be reached for is left to the daemon, which retries
    every few seconds while it leads (drd status shows what waits)."""
    from drd.services import credentials

    try:
        done = credentials.apply_now(state.catalog(), state.master_key(), systems)
    except DrdError as error:
        if not as_json:
            output.say(f"  the stores will be told by the daemon: {error}")
        return {"applied": False, "error": str(error)}
    if not as_json:
        if done.changed:
            output.say(f"  keys: {done.issued} made, {done.disabled} disabled, "
                       f"{done.superseded} replaced")
        for failure in done.failures:
            output.say(f"  not yet (the daemon retries): {failure}")
    return {"applied": True, "issued": done.issued, "disabled": done.disabled,
            "superseded": done.superseded, "failures": done.failures}


@system_group.command("retire")
@home_option
@click.argument("system")
@json_option
@click.pass_obj
def retire_command(state: CliState, system: str, as_json: bool) -> None:
    """Retire SYSTEM: revoke its agent's tokens and disable its keys in every store.

    Its snapshots stay in the stores, restorable by the centre. Use it at once when a
    department system is compromised: its keys stop working in every reachable store
    within seconds, and in the others as soon as they answer again (drd status).
    """
    from drd.services import credentials

    revoked = credentials.retire_system(state.catalog(), system)
    if not as_json:
        output.say(f"system {system} is retired ({revoked} token(s) revoked)")
    result = apply_keys(state, [credentials.system_id(state.catalog(), system)], as_json)
    if as_json:
        output.emit_json({"system": system, "tokens_revoked": revoked, "keys": result})


@system_group.command("rotate-credentials")
@home_option
@click.argument("system")
@json_option
@click.pass_obj
def rotate_command(state: CliState, system: str, as_json: bool) -> None:
    """Give SYSTEM new keys in every store; the old ones are disabled once its agent uses
    the new ones (it fetches them at its next heartbeat)."""
    from drd.services import credentials

    replaced = credentials.request_rotation(state.catalog(), system)
    if not as_json:
        output.say(f"system {system}: {replaced} key(s) to be replaced")
    result = apply_keys(state, [credentials.system_id(state.catalog(), system)], as_json)
    if as_json:
        output.emit_json({"system": system, "replaced": replaced, "keys": result})


@system_group.command("token")
@home_option
@click.argument("system")
@click.option("--department", required=True, metavar="D",
              help="The department that owns the system (created if new).")
@click.option("--policy", required=True, metavar="P",
              help="The applied policy the system follows (see drd policy list).")
@click.option("--expires", default="24h", show_default=True, metavar="DURATION",
              help="How long the token may be used (1m to 30d).")
@click.option("--server", metavar="URL",
              help="The URL agents reach the centre at (default: public_url in drd.yaml, "
                   "else https://<listen>).")
@click.pass_obj
def token_command(state: CliState, system: str, department: str, policy: str, expires: str,
                  server: str | None) -> None:
    """Print a one-time enrollment token for SYSTEM, alone on stdout.

    Give it to the system's administrator for 'drd-agent enroll --token-file FILE'. The
    token carries the server URL, the CA fingerprint and its expiry; the centre keeps
    only its hash. A newer token replaces the earlier unused ones of the system.
    """
    expires_in = _duration(expires)
    config = state.config()
    url = enrollment.server_url(config, server)
    fingerprint = KeyStore(config.keys_dir, None).ca_fingerprint()
    issued = enrollment.issue_token(state.catalog(), system=system, department=department,
                                    policy=policy, ca_sha256=fingerprint, server=url,
                                    expires_in=expires_in)
    output.echo(issued.token.text.reveal())
    output.say(f"enrollment token for {system} (department {department}, policy {policy}), "
               f"valid until {issued.token.expires:%Y-%m-%d %H:%M}Z, server {url}")
    if issued.revoked_earlier:
        output.say(f"  it replaces {issued.revoked_earlier} earlier unused token(s)")
    if enrollment.is_wildcard_url(url):
        output.say(f"  warning: agents cannot reach {url}: set public_url in drd.yaml or "
                   "pass --server URL")
