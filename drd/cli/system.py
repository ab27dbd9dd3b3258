"""``drd system token``: enroll a department's system."""

from __future__ import annotations

import click

from drd.cli.context import CliState
from drd.cli.options import home_option
from drd.console import output
from drd.crypto.keystore import KeyStore
from drd.errors import UserError
from drd.services import enrollment
from policies import parse_duration


def _duration(text: str):
    try:
        return parse_duration(text)
    except ValueError as error:
        raise UserError(f"--expires: {error}") from None


@click.group("system")
def system_group() -> None:
    """Department systems: enrollment of their agents."""


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

    Give it to the system's administrator for 'drd-agent enroll --token T'. The
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
