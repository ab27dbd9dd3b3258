"""Failure classification, messages, and masking of restic's stderr."""

from __future__ import annotations

import io

import pytest

from drd.errors import OperationError, UserError
from drd.restic.errors import (
    EXIT_FATAL,
    EXIT_LOCK_FAILED,
    EXIT_REPOSITORY_MISSING,
    EXIT_WRONG_PASSWORD,
    STDERR_TAIL_LINES,
    ResticError,
    ResticLocked,
    ResticRepositoryExists,
    ResticRepositoryMissing,
    ResticSnapshotMissing,
    ResticStoreUnavailable,
    ResticWrongPassword,
    SourceMissing,
    classify_failure,
    failure_message,
)
from drd.restic.process import _StderrReader
from drd.restic.types import Repository
from drd.secrets import REDACTED, Secret


@pytest.mark.parametrize(
    ("exit_code", "stderr", "expected"),
    [
        (EXIT_FATAL, ["Fatal: wrong password or no key found"], ResticWrongPassword),
        (EXIT_FATAL, ["Fatal: unable to open config file: stat /r/config: no such file or "
                      "directory", "Is there a repository at the following location?", "/r"],
         ResticRepositoryMissing),
        (EXIT_FATAL, ["Fatal: unable to open config file: Stat: The specified key does not "
                      "exist.", "Is there a repository at the following location?",
                      "s3:http://127.0.0.1:1/b"], ResticRepositoryMissing),
        (EXIT_FATAL, ['Fatal: unable to open config file: client.Head: Head "http://drd:***@'
                      '127.0.0.1:9/repo/config": dial tcp 127.0.0.1:9: connect: connection '
                      "refused", "Is there a repository at the following location?"],
         ResticStoreUnavailable),
        (EXIT_FATAL, ["Fatal: unable to open config file: Stat: SignatureDoesNotMatch"],
         ResticStoreUnavailable),
        (EXIT_FATAL, ["Fatal: unable to open config file: Stat: The request signature we "
                      "calculated does not match the signature you provided. Check your key "
                      "and signing method.", "Is there a repository at the following location?",
                      "s3:http://127.0.0.1:19015/drd-test/finance/web-1"],
         ResticStoreUnavailable),
        (EXIT_FATAL, ["Fatal: create repository at /r failed: config file already exists"],
         ResticRepositoryExists),
        (EXIT_FATAL, ["unable to create lock in backend: repository is already locked by PID "
                      "12 on vm by root"], ResticLocked),
        (EXIT_FATAL, ['invalid id "abcdef12": no matching ID found for prefix "abcdef12"'],
         ResticSnapshotMissing),
        (EXIT_FATAL, ["Fatal: something else"], ResticError),
        (EXIT_WRONG_PASSWORD, [], ResticWrongPassword),
        (EXIT_REPOSITORY_MISSING, [], ResticRepositoryMissing),
        (EXIT_LOCK_FAILED, [], ResticLocked),
        (2, [], ResticError),
    ],
)
def test_classify_failure(exit_code, stderr, expected):
    assert classify_failure(exit_code, stderr) is expected


def test_error_hierarchy_maps_to_exit_statuses():
    assert issubclass(ResticWrongPassword, ResticError)
    assert issubclass(ResticError, OperationError) and ResticError.exit_status == 1
    assert issubclass(SourceMissing, UserError) and SourceMissing.exit_status == 2


def test_failure_message_says_what_and_where():
    message = failure_message(ResticWrongPassword, "snapshots", "dc-a/finance/web-1", 1,
                              ["Fatal: wrong password or no key found"])
    assert message.startswith("restic snapshots: the password does not open repository "
                              "dc-a/finance/web-1")
    assert message.endswith("restic said:\n  Fatal: wrong password or no key found")
    plain = failure_message(ResticError, "backup", "/r", 1, [])
    assert plain == "restic backup failed on /r (exit status 1)"


def test_error_carries_command_exit_code_and_tail():
    error = ResticError("m", command=["restic", "check"], exit_code=1, stderr_tail=["a"])
    assert error.command == ("restic", "check") and error.exit_code == 1
    assert error.stderr_tail == ("a",) and str(error) == "m"


def test_stderr_is_masked_and_its_tail_kept():
    password = "s3cret-password"
    aws_secret = "AWS/secret+key"
    repository = Repository(
        url="rest:http://drd:url-pass-word@127.0.0.1:8000/repo/",
        password=Secret(password),
        env={"AWS_SECRET_ACCESS_KEY": Secret(aws_secret)},
    )
    lines = [f"line {n}" for n in range(20)] + [
        f"Fatal: password {password} rejected",
        f"key {aws_secret} refused",
        "Head http://drd:url-pass-word@127.0.0.1:8000/repo/config: refused",
        "url-pass-word on its own",
        '{"message_type":"error","error":{"message":"x"},"item":"/a"}',
        f'{{"message_type":"exit_error","code":1,"message":"Fatal: {password} is wrong"}}',
    ]
    stream = io.BytesIO("".join(line + "\n" for line in lines).encode())
    reader = _StderrReader(stream, repository.secrets())
    reader.run()  # synchronously: the stream is in memory
    joined = "\n".join(reader.lines)
    for secret in (password, aws_secret, "url-pass-word"):
        assert secret not in joined
        assert all(secret not in line for line in reader.tail)
    assert f"password {REDACTED} rejected" in joined
    assert len(reader.tail) == STDERR_TAIL_LINES
    assert list(reader.tail)[-2:] == ["error: /a: x", f"Fatal: {REDACTED} is wrong"]
    assert [m.type for m in reader.messages] == ["error", "exit_error"]


def test_subcommand_of_a_full_argv():
    from drd.restic.runner import _subcommand

    assert _subcommand(("restic", "--password-file", "/dev/fd/3", "--cache-dir", "/c",
                        "backup", "--json")) == "backup"
    assert _subcommand(("restic", "version")) == "version"
