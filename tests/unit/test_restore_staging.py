"""Moving a restored tree into its target (drd.services.restore.staging.promote): what
replaces what, and a move that fails loses neither the target's file nor the copy."""

from __future__ import annotations

import os

import pytest

from drd.errors import OperationError
from drd.services.restore import staging


def _stage(tmp_path):
    target, tree = tmp_path / "target", tmp_path / "target" / ".drd-restore-x"
    tree.mkdir(parents=True)
    return target, tree


def test_files_links_and_directories_replace_what_is_in_the_way(tmp_path):
    target, tree = _stage(tmp_path)
    (target / "file").write_text("old")
    (target / "was-dir").mkdir()
    (target / "was-dir" / "inner").write_text("old")
    (target / "was-file").write_text("old")
    os.symlink("/etc", target / "link")
    (tree / "file").write_text("new")
    (tree / "was-dir").write_text("now a file")
    (tree / "was-file").mkdir()
    (tree / "was-file" / "inner").write_text("new")
    (tree / "link").write_text("a file where a link was")
    staging.promote(tree, target)
    assert (target / "file").read_text() == "new"
    assert (target / "was-dir").read_text() == "now a file"
    assert (target / "was-file" / "inner").read_text() == "new"
    assert not (target / "link").is_symlink() and (target / "link").read_text()
    assert sorted(os.listdir(target)) == ["file", "link", "was-dir", "was-file"]


def test_a_move_that_fails_keeps_the_target_and_the_restored_copy(tmp_path, monkeypatch):
    target, tree = _stage(tmp_path)
    (target / "data").mkdir()
    (target / "data" / "mine").write_text("the owner's")
    (tree / "data").write_text("restored")

    def cross_device(source, destination):
        raise OSError(18, "Invalid cross-device link", str(destination))

    monkeypatch.setattr(staging, "_move", cross_device)
    with pytest.raises(OperationError, match="still in"):
        staging.promote(tree, target)
    assert (target / "data" / "mine").read_text() == "the owner's"
    assert (tree / "data").read_text() == "restored"
