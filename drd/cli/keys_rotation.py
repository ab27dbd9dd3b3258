"""``drd keys change-passphrase | rotate-escrow | rotate-signing | finish-rotation``.

The commands around :mod:`drd.services.key_rotation`: they check that no daemon runs,
ask for what they need, rotate, and say loudly what the administrator must do next
(restart the daemons; export the recovery kit again after a new escrow or signing key).
"""

from __future__ import annotations

import os
import sys

import click

from drd.cli.context import CliState
from drd.cli.options import home_option, json_option
from drd.console import output
from drd.crypto.keystore import KeyStore
from drd.errors import DrdError, UserError
from drd.secrets import Secret
from drd.services import key_rotation

KIT_WARNING = ("EXPORT THE RECOVERY KIT AGAIN NOW (drd keys export-recovery-kit -o FILE): "
               "the kit you hold has the old key and cannot open what is sealed or check "
               "what is signed from now on. Keep the old kit until every store holds a "
               "catalog copy made after this rotation, then destroy it.")


def _actor() -> str:
    try:
        import pwd

        return f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    except (ImportError, KeyError):
        return f"cli:{os.getuid()}"


def _new_passphrase() -> Secret:
    """``$DRD_NEW_MASTER_PASSPHRASE``, else typed twice, hidden, on a terminal."""
    value = key_rotation.new_passphrase_from_environment()
    if value is not None:
        return value
    if not sys.stdin.isatty():
        raise UserError(f"no new master passphrase: set {key_rotation.NEW_PASSPHRASE_VARIABLE} "
                        "or run this on a terminal to type it")
    return Secret(click.prompt("New master passphrase", hide_input=True,
                               confirmation_prompt="Repeat it", err=True,
                               show_default=False))


def _hold_lock(state: CliState) -> None:
    """Be the only keys command of this centre until this command ends."""
    click.get_current_context().call_on_close(key_rotation.RotationLock(state.home).release)


def _prepare(state: CliState) -> None:
    """Hold the rotation lock, finish or undo an interrupted rotation, then refuse if a
    daemon runs."""
    _hold_lock(state)
    outcome = key_rotation.finish_pending(state.home, state.catalog())
    if outcome.outcome != "none":
        output.say(f"an interrupted key rotation ({outcome.kind or 'incomplete'}) was "
                   f"{outcome.outcome} first")
    key_rotation.check_daemons_stopped(state.catalog(), state.config())


def _publish_copy(state: CliState) -> list[str]:
    """Write a catalog copy with the new keys to every store; return the problems."""
    from drd.recovery.copies import publish

    config = state.config()
    keystore = KeyStore(config.keys_dir, state.master_key())
    try:
        result = publish(state.catalog(), state.master_key(), keystore, config)
    except DrdError as error:
        return [str(error)]
    return [problem.error or problem.store for problem in result.failed]


def _report(result: key_rotation.RotationResult, lines: list[str], as_json: bool,
            extra: dict | None = None) -> None:
    if as_json:
        output.emit_json({**result.as_dict(), **(extra or {})})
    else:
        output.say_lines(lines)


@click.command("change-passphrase")
@home_option
@json_option
@click.pass_obj
def change_passphrase_command(state: CliState, as_json: bool) -> None:
    """Re-encrypt the keys, store secrets and systems' store keys under a new passphrase.

    The current passphrase comes as always ($DRD_MASTER_PASSPHRASE or the systemd
    credential; a centre with a master.key file needs none), the new one from
    $DRD_NEW_MASTER_PASSPHRASE or typed twice. Stop every drd serve first; afterwards
    put the new passphrase in the credential and start them again.
    """
    _prepare(state)
    old = state.master_key()
    new = _new_passphrase()
    result = key_rotation.change_passphrase(state.config(), state.catalog(), old, new,
                                            actor=_actor())
    _report(result, [
        f"re-encrypted {result.counts['key_files']} key files, "
        f"{result.counts['store_secrets']} store secrets and "
        f"{result.counts['store_credentials']} systems' own store keys under the new master "
        "passphrase "
        f"(audit: keys.change_passphrase {result.rotation})",
        "Put the new passphrase in the systemd credential drd-master-passphrase (or "
        "DRD_MASTER_PASSPHRASE) before starting drd serve: the old one opens nothing now.",
    ], as_json)


@click.command("rotate-escrow")
@home_option
@json_option
@click.pass_obj
def rotate_escrow_command(state: CliState, as_json: bool) -> None:
    """A new escrow key pair; every system's sealed password re-sealed to it.

    Each unsealing is in the audit log. The old private key is deleted. Agents need
    nothing: they seal only at enrollment, and new enrollments get the new key once
    drd serve is started again. Export the recovery kit again afterwards.
    """
    _prepare(state)
    result = key_rotation.rotate_escrow(state.config(), state.catalog(), state.master_key(),
                                        actor=_actor())
    problems = _publish_copy(state)
    _report(result, [
        f"new escrow key sha256 {result.new_key} (was {result.old_key}); "
        f"{result.counts['systems']} sealed passwords re-sealed "
        f"(audit: keys.rotate_escrow {result.rotation})",
        *_copy_lines(problems), KIT_WARNING,
    ], as_json, {"catalog_copy_problems": problems})


@click.command("rotate-signing")
@home_option
@json_option
@click.pass_obj
def rotate_signing_command(state: CliState, as_json: bool) -> None:
    """A new signing key; the old public key is kept in keys/retired/.

    Drill reports in the catalog are signed again with the new key; exported reports
    and catalog copies signed before stay verifiable with the retired key. Export the
    recovery kit again afterwards.
    """
    _prepare(state)
    result = key_rotation.rotate_signing(state.config(), state.catalog(), state.master_key(),
                                         actor=_actor())
    problems = _publish_copy(state)
    unverified = (f"; {len(result.unverified_drills)} drill reports did not verify with any "
                  f"known key and keep their old signature: "
                  f"{', '.join(f'#{i}' for i in result.unverified_drills[:20])}"
                  if result.unverified_drills else "")
    _report(result, [
        f"new signing key sha256 {result.new_key}; the old one {result.old_key} is retired "
        f"(kept in keys/retired/ to verify what it signed); "
        f"{result.counts['drills_signed_again']} drill reports signed again{unverified} "
        f"(audit: keys.rotate_signing {result.rotation})",
        *_copy_lines(problems), KIT_WARNING,
    ], as_json, {"catalog_copy_problems": problems})


@click.command("finish-rotation")
@home_option
@json_option
@click.pass_obj
def finish_rotation_command(state: CliState, as_json: bool) -> None:
    """Complete or undo a key rotation that stopped half-way (needs no passphrase).

    Finished when the catalog holds its audit entry (its change was committed), else
    undone; the old or the new keys are in keys/ afterwards, never a mix.
    """
    _hold_lock(state)
    outcome = key_rotation.finish_pending(state.home, state.catalog())
    if as_json:
        output.emit_json(vars(outcome))
    elif outcome.outcome == "none":
        output.say("no interrupted key rotation")
    else:
        output.say(f"the interrupted key rotation ({outcome.kind or 'incomplete'}) was "
                   f"{outcome.outcome}")


def _copy_lines(problems: list[str]) -> list[str]:
    if not problems:
        return ["wrote a catalog copy with the new key to every store"]
    return ["the catalog copy with the new key was NOT written everywhere (run "
            "'drd catalog backup' once fixed):", *(f"  {problem}" for problem in problems)]


COMMANDS = (change_passphrase_command, rotate_escrow_command, rotate_signing_command,
            finish_rotation_command)
