"""``drd completion SHELL`` and ``drd-agent completion SHELL``: click's shell completion
script, printed, so that nobody needs to know click's ``_DRD_COMPLETE`` variable.

The script calls the command back with ``_DRD_COMPLETE=<shell>_complete`` (or
``_DRD_AGENT_COMPLETE``) and the words typed so far in ``COMP_WORDS`` / ``COMP_CWORD``;
click answers from the command tree itself, so completion never goes stale. Install lines
for each shell are in docs/install.md.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from drd.console import output

SHELLS = ("bash", "zsh", "fish")


def complete_variable(prog_name: str) -> str:
    """The environment variable click's completion protocol uses for ``prog_name``
    (``drd`` -> ``_DRD_COMPLETE``, ``drd-agent`` -> ``_DRD_AGENT_COMPLETE``)."""
    return f"_{prog_name}_COMPLETE".replace("-", "_").upper()


def completion_script(root: click.Command, prog_name: str, shell: str) -> str:
    """The completion script of ``shell`` for the command ``root`` named ``prog_name``.

    Raises:
        click.BadParameter: click has no completion for ``shell``.
    """
    completion_class = get_completion_class(shell)
    if completion_class is None:
        raise click.BadParameter(f"no completion for {shell!r}; one of {', '.join(SHELLS)}")
    return completion_class(root, {}, prog_name, complete_variable(prog_name)).source()


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_command(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    bash:  drd completion bash > /usr/share/bash-completion/completions/drd
    zsh:   drd completion zsh > /usr/local/share/zsh/site-functions/_drd
    fish:  drd completion fish > ~/.config/fish/completions/drd.fish
    or, for one shell session: eval "$(drd completion bash)" (drd-agent likewise)
    """
    root = ctx.find_root()
    prog_name = root.info_name or root.command.name or "drd"
    output.echo(completion_script(root.command, prog_name, shell).rstrip("\n"))
