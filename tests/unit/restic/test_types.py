"""The Repository value: secrets out of repr, bad values refused."""

from __future__ import annotations

import dataclasses

import pytest

from drd.errors import UserError
from drd.restic.types import KeepRules, Repository
from drd.secrets import Secret


def test_repository_never_shows_its_secrets():
    repository = Repository(
        url="rest:http://drd:url-secret@127.0.0.1:8000/repo/",
        password="repo-password",
        env={"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": Secret("aws-secret")},
    )
    text = repr(repository) + str(repository) + repository.display
    for secret in ("url-secret", "repo-password", "aws-secret"):
        assert secret not in text
    assert isinstance(repository.url, Secret) and isinstance(repository.password, Secret)
    assert repository.display == "rest:http://drd:**redacted**@127.0.0.1:8000/repo/"
    assert set(repository.secrets()) >= {Secret("repo-password"), Secret("aws-secret"),
                                         "url-secret"}


def test_repository_display_can_be_given_and_is_frozen():
    repository = Repository(url=Secret("/srv/repo"), password=Secret("pw-pw-pw"),
                            display="dc-a/finance/web-1")
    assert repository.display == "dc-a/finance/web-1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        repository.display = "other"
    with pytest.raises(TypeError):
        repository.env["X"] = "y"


@pytest.mark.parametrize(
    "arguments",
    [
        {"url": "", "password": "pw-pw-pw"},
        {"url": "/r", "password": ""},
        {"url": "/r", "password": " padded "},
        {"url": "/r", "password": "pw-pw-pw", "env": {"RESTIC_PASSWORD": "x"}},
        {"url": "/r", "password": "pw-pw-pw", "env": {"RESTIC_REPOSITORY_FILE": "/x"}},
    ],
)
def test_repository_refuses_bad_values(arguments):
    with pytest.raises(UserError):
        Repository(**arguments)


def test_keep_rules_emptiness():
    assert KeepRules().is_empty()
    assert not KeepRules(yearly=0).is_empty()
