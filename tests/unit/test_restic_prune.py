"""``restic prune``: its command tuple and the parse of restic 0.14's text report."""

from __future__ import annotations

import pytest

from drd.errors import UserError
from drd.restic.commands import prune_command, restic_argv
from drd.restic.parse import parse_prune_output
from drd.restic.types import PruneResult

# restic 0.14.0's report of a prune that dropped two packs (stdout, progress included)
REPORT_014 = """\
loading indexes...
loading all snapshots...
finding data that is still in use for 1 snapshots
[0:00] 100.00%  1 / 1 snapshots

searching used packs...
collecting packs for deletion and repacking
[0:00] 100.00%  4 / 4 packs processed


to repack:             3 blobs / 12.345 KiB
this removes:          0 blobs / 0 B
to delete:             4 blobs / 1.908 MiB
total prune:           4 blobs / 1.908 MiB
remaining:             5 blobs / 1.908 MiB
unused size after prune: 0 B (0.00% of remaining size)

rebuilding index
[0:00] 100.00%  2 / 2 packs processed

deleting obsolete index files
[0:00] 100.00%  2 / 2 files deleted

removing 2 old packs
[0:00] 100.00%  2 / 2 files deleted

done
"""


def test_prune_command_defaults_to_restics_own_settings():
    assert prune_command() == ("prune",)


def test_prune_command_with_max_unused():
    assert prune_command("0") == ("prune", "--max-unused=0")
    assert prune_command("unlimited") == ("prune", "--max-unused=unlimited")


@pytest.mark.parametrize("bad", ["", "  ", "--dry-run"])
def test_prune_command_refuses_bad_max_unused(bad):
    with pytest.raises(UserError, match="max-unused"):
        prune_command(bad)


def test_prune_argv_carries_no_secret():
    argv = restic_argv("restic", prune_command(), password_fd=7)
    assert argv == ("restic", "--password-file", "/dev/fd/7", "prune")


def test_parse_prune_report():
    assert parse_prune_output(REPORT_014.splitlines()) == PruneResult(
        blobs_deleted=4, bytes_deleted="1.908 MiB", blobs_repacked=3, packs_removed=2)


def test_parse_prune_with_nothing_to_do():
    lines = ["loading indexes...", "to repack:             0 blobs / 0 B",
             "to delete:             0 blobs / 0 B", "done"]
    assert parse_prune_output(lines) == PruneResult(bytes_deleted="0 B")


def test_parse_prune_of_unknown_text_is_empty():
    assert parse_prune_output(["something else entirely", ""]) == PruneResult()
