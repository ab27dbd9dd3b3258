"""Secrets print as **redacted** and are masked out of free text."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drd.secrets import REDACTED, Secret, mask


def test_a_secret_never_prints() -> None:
    secret = Secret("hunter2-hunter2")
    for shown in (str(secret), repr(secret), f"{secret}", f"{secret!r}",
                  "%s" % secret):  # noqa: UP031 -- what logging does
        assert "hunter2" not in shown
        assert REDACTED in shown
    assert secret.reveal() == "hunter2-hunter2"
    assert Secret(b"bytes-secret").reveal() == "bytes-secret"


def test_a_secret_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret("do-not-persist"))


def test_mask_removes_given_secrets_longest_first() -> None:
    text = "open failed: key abcd1234 and abcd12345678 rejected"
    masked = mask(text, [Secret("abcd1234"), "abcd12345678", None, ""])
    assert "abcd" not in masked
    assert masked.count(REDACTED) == 2


def test_mask_removes_passwords_from_urls() -> None:
    text = "Fatal: rest:http://drd:s3cr3t-value@127.0.0.1:8000/repo/ unreachable"
    masked = mask(text)
    assert "s3cr3t-value" not in masked
    assert "rest:http://drd:" in masked and "@127.0.0.1:8000/repo/" in masked


def test_mask_leaves_short_values_alone() -> None:
    assert mask("a b c", ["a"]) == "a b c"


# Secrets drawn from characters that REDACTED does not contain, so that a replacement
# cannot combine with the text around it into the secret again.
@given(st.text(min_size=4, alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/="),
       st.text(), st.text())
def test_mask_never_leaves_the_secret(secret: str, before: str, after: str) -> None:
    assert secret not in mask(before + secret + after, [secret])


def test_url_password_is_found_also_behind_a_backend_prefix() -> None:
    from drd.secrets import url_password

    assert url_password("rest:http://drd:pa55-word@127.0.0.1:8000/") == "pa55-word"
    assert url_password("postgresql+psycopg://u:pw%40x@db:5432/drd") == "pw%40x"
    assert url_password("s3:http://127.0.0.1:8333/bucket") is None
    assert url_password("/srv/repo") is None
