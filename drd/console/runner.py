"""Running a click command with drd's exit-status convention (``drd`` and ``drd-agent``).

Exit status: 0 success, 1 a failed operation, 2 bad usage or bad input. drd's own errors
are caught here, at the edge, and printed as one line that says what to do.
"""

from __future__ import annotations

import sys

import click

from drd.console import output
from drd.errors import EXIT_FAILED, EXIT_USAGE, DrdError

EXIT_INTERRUPTED = 130


def run(command: click.Command, prog_name: str, argv: list[str] | None = None) -> None:
    """Run ``command`` with ``argv`` (default: ``sys.argv[1:]``) and exit."""
    try:
        command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except DrdError as problem:
        output.error(prog_name, str(problem))
        sys.exit(problem.exit_status)
    except click.exceptions.Abort:
        output.error(prog_name, "aborted")
        sys.exit(EXIT_FAILED)
    except click.ClickException as problem:
        problem.show()
        sys.exit(EXIT_USAGE if problem.exit_code == 2 else problem.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:
        output.error(prog_name, "interrupted")
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0)
