"""The error types every layer raises, and the exit status each maps to.

Commands and API handlers catch these at the edge; everything below raises them
with a message that says what went wrong and what to do about it.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class DrdError(Exception):
    """Base of drd's own errors. ``exit_status`` is what the CLI exits with."""

    exit_status = EXIT_FAILED


class UserError(DrdError):
    """Bad usage or bad input (a wrong URL, an invalid policy, a missing file): exit 2."""

    exit_status = EXIT_USAGE


class OperationError(DrdError):
    """A well-formed request that failed (a store down, restic failing): exit 1."""

    exit_status = EXIT_FAILED
