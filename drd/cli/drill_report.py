"""``drd drill report`` and ``drd drill verify-report``: signed drill reports for auditors.

``report`` exports a drill's report from the catalog as JSON or one self-contained HTML
page. The catalog's own signature of the report is checked first, so a row changed after
the drill is refused rather than signed afresh. With ``-o FILE`` the export and its
detached signature ``FILE.sig`` are written (each replaced atomically); on stdout there
is no signature, and stderr says so.

``verify-report`` checks a detached signature with the centre's public key, or with a PEM
file for an auditor who has no access to the centre.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

from drd.catalog.models import Drill, Store, System
from drd.cli.context import CliState
from drd.cli.options import home_option
from drd.console import output
from drd.crypto.errors import BadSignature
from drd.crypto.keystore import KeyStore
from drd.crypto.pem import load_signing_public_key
from drd.crypto.signing import SIGNATURE_SUFFIX, public_key_fingerprint, verify_file
from drd.errors import EXIT_FAILED, OperationError, UserError
from restore_drills.html import render_html
from restore_drills.report import (
    json_export,
    signature_key_fingerprint,
    verify_report_signature,
    write_signed_export,
)

HISTORY_LENGTH = 100


def _load(state: CliState, drill_id: int) -> tuple[dict[str, Any], bytes | None,
                                                    list[dict[str, Any]]]:
    """The drill's report and catalog signature, and its system's last drills (oldest first).

    Raises :class:`UserError` for an unknown id, :class:`OperationError` for a drill that
    has not finished.
    """
    with state.catalog().session() as session:
        drill = session.get(Drill, drill_id)
        if drill is None:
            raise UserError(f"no drill #{drill_id} in the catalog: `drd drill list` shows them")
        if drill.passed is None or drill.report is None:
            raise OperationError(f"drill #{drill_id} is still running: export it once it "
                                 "has finished")
        rows = session.execute(
            sa.select(Drill.id, Store.name, Drill.started_at, Drill.passed, Drill.rto_seconds)
            .join(Store, Store.id == Drill.store_id)
            .where(Drill.system_id == drill.system_id)
            .order_by(Drill.started_at.desc(), Drill.id.desc())
            .limit(HISTORY_LENGTH)).all()
        system = session.get(System, drill.system_id)
        if system is None:  # the foreign key makes this impossible; say so if it happens
            raise OperationError(f"drill #{drill_id} names a system that is not in the catalog")
        report, signature = dict(drill.report), drill.signature
    history = [{"id": row.id, "store": row.name, "started_at": row.started_at.isoformat(),
                "passed": row.passed, "rto_seconds": row.rto_seconds}
               for row in reversed(rows)]
    return report, signature, history


@click.command("report")
@home_option
@click.argument("drill_id", metavar="ID", type=int)
@click.option("--format", "export_format", type=click.Choice(["html", "json"]),
              default="html", show_default=True, help="Export format.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to FILE and its signature to FILE.sig (both replaced "
                   "if present). Without it the report goes to stdout, unsigned.")
@click.pass_obj
def report_command(state: CliState, drill_id: int, export_format: str,
                   output_path: Path | None) -> None:
    """Export the report of drill ID as HTML (one self-contained page) or JSON.

    The catalog's signature of the report is checked first: a report changed in the
    catalog after the drill is refused (exit 1). Check an exported file with
    `drd drill verify-report FILE`.
    """
    report, signature, history = _load(state, drill_id)
    keystore = KeyStore(state.config().keys_dir, None)
    if signature is None:
        raise OperationError(f"drill #{drill_id} has no signature in the catalog; refusing "
                             "to export an unsigned report")
    try:
        verify_report_signature(keystore.signing_public_key(), report, signature)
    except BadSignature:
        raise OperationError(
            f"drill #{drill_id}: the report in the catalog does not match the signature made "
            "when the drill ran (the catalog row was changed since); refusing to export and "
            "sign it") from None
    if export_format == "json":
        data = json_export(report)
    else:
        data = (render_html(report, history) + "\n").encode()
    if output_path is None:
        output.echo(data.decode().removesuffix("\n"))
        output.say("not signed: use -o FILE to write FILE and its signature FILE.sig")
        return
    signing_key = KeyStore(state.config().keys_dir, state.master_key()).signing_private_key()
    try:
        signature_path = write_signed_export(signing_key, data, output_path)
    except OSError as error:
        raise UserError(f"cannot write {output_path}: {error.strerror}") from None
    output.say(f"wrote {output_path} and its signature {signature_path}; "
               f"check them with `drd drill verify-report {output_path}`")


@click.command("verify-report")
@home_option
@click.argument("report_file", metavar="FILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--signature", "signature_path", metavar="SIG",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The detached signature (default FILE.sig).")
@click.option("--public-key", "public_key_path", metavar="PEM_FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The centre's signing public key (keys/signing.pub.pem) instead of the "
                   "home's: checks a report without access to the centre.")
@click.pass_obj
def verify_report_command(state: CliState, report_file: Path, signature_path: Path | None,
                          public_key_path: Path | None) -> None:
    """Check that FILE is a drill report exactly as the centre signed it.

    Prints `OK: signed by <key fingerprint>` (exit 0) or `FAILED: <why>` (exit 1).
    """
    signature_path = signature_path or Path(f"{report_file}{SIGNATURE_SUFFIX}")
    retired = False
    if public_key_path is not None:
        public_key = load_signing_public_key(public_key_path.read_bytes())
    else:
        # the current key or one retired by `drd keys rotate-signing`, as the file names it
        keyring = KeyStore(state.config().keys_dir, None).signing_keyring()
        named = signature_key_fingerprint(signature_path)
        entry = next((entry for entry in keyring if entry.fingerprint == named), keyring[0])
        public_key, retired = entry.public_key, entry.retired
    try:
        verify_file(public_key, report_file, signature_path)
    except BadSignature as error:
        output.echo(f"FAILED: {error}")
        raise SystemExit(EXIT_FAILED) from None
    except OSError as error:
        output.echo(f"FAILED: cannot read {error.filename}: {error.strerror}")
        raise SystemExit(EXIT_FAILED) from None
    output.echo(f"OK: signed by {public_key_fingerprint(public_key)}"
                + (" (a retired signing key of this centre)" if retired else ""))
