"""Shell completion for drd and drd-agent: the scripts, and click's completion protocol
(``COMP_WORDS`` / ``COMP_CWORD`` with ``_DRD_COMPLETE`` / ``_DRD_AGENT_COMPLETE``), in
process. tests/integration/test_completion_shell.py sources a script in a real bash."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from agents.cli import agent_cli
from drd.cli.completion import SHELLS, complete_variable
from drd.cli.main import cli

COMMANDS = {"drd": cli, "drd-agent": agent_cli}

# What each shell's script must call back: the variable, with the shell's protocol.
MARKERS = {
    "bash": ("complete -o nosort -F _{func}_completion {prog}", "{var}=bash_complete"),
    "zsh": ("compdef _{func}_completion {prog}", "{var}=zsh_complete"),
    "fish": ("complete --no-files --command {prog}", "{var}=fish_complete"),
}


def invoke(prog: str, args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(COMMANDS[prog], args, prog_name=prog, env=env)


def complete(prog: str, shell: str, words: str, cword: int) -> str:
    """What click answers a ``shell`` completion request for the typed ``words``, the
    ``cword``-th being completed (fish's script sends that word itself, not its index)."""
    current = words.split(" ")[cword] if shell == "fish" else str(cword)
    result = invoke(prog, [], env={complete_variable(prog): f"{shell}_complete",
                                   "COMP_WORDS": words, "COMP_CWORD": current})
    assert result.exit_code == 0, result.output
    return result.output


def offered(shell: str, answer: str) -> set[str]:
    """The values in a completion answer (bash: ``type,value`` lines; fish: the same with
    a tab and the help; zsh: ``type``, ``value``, ``help`` lines)."""
    lines = answer.splitlines()
    if shell == "zsh":
        return {lines[i + 1] for i in range(0, len(lines) - 2, 3) if lines[i] == "plain"}
    return {line.split(",", 1)[1].split("\t")[0] for line in lines
            if line.startswith("plain,")}


def test_the_variables_follow_click() -> None:
    assert complete_variable("drd") == "_DRD_COMPLETE"
    assert complete_variable("drd-agent") == "_DRD_AGENT_COMPLETE"


@pytest.mark.parametrize("prog", sorted(COMMANDS))
@pytest.mark.parametrize("shell", SHELLS)
def test_completion_prints_each_shells_script(prog: str, shell: str) -> None:
    result = invoke(prog, ["completion", shell])
    assert result.exit_code == 0, result.output
    func = prog.replace("-", "_")
    for marker in MARKERS[shell]:
        assert marker.format(func=func, prog=prog, var=complete_variable(prog)) \
            in result.output, (marker, result.output)


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_an_unknown_shell_is_bad_usage(prog: str) -> None:
    result = invoke(prog, ["completion", "tcsh"])
    assert result.exit_code == 2
    assert "tcsh" in result.output


@pytest.mark.parametrize("shell", SHELLS)
def test_drd_dr_completes_to_drill(shell: str) -> None:
    assert offered(shell, complete("drd", shell, "drd dr", 1)) == {"drill"}


@pytest.mark.parametrize("shell", SHELLS)
def test_drd_agent_en_completes_to_enroll(shell: str) -> None:
    assert offered(shell, complete("drd-agent", shell, "drd-agent en", 1)) == {"enroll"}


def test_every_drd_command_is_offered_on_an_empty_word() -> None:
    names = offered("bash", complete("drd", "bash", "drd ", 1))
    assert {"drill", "serve", "status", "completion"} <= names
    assert names == set(cli.list_commands(click.Context(cli)))


def test_subcommands_and_options_complete_too() -> None:
    assert offered("bash", complete("drd", "bash", "drd drill ", 2)) >= {"run", "list"}
    assert offered("bash", complete("drd", "bash", "drd completion ", 2)) == set(SHELLS)
    assert "--home" in offered("bash", complete("drd-agent", "bash", "drd-agent run --h", 2))
