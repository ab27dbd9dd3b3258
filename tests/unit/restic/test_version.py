"""The minimum version and the per-binary cache."""

from __future__ import annotations

import pytest

from drd.restic.errors import ResticNotFound, ResticTooOld
from drd.restic.runner import Restic
from drd.restic.types import ResticVersion
from drd.restic.version import MINIMUM_VERSION, cached_version, clear_cache, require_supported


def test_supported_versions_pass():
    assert require_supported(ResticVersion(0, 14, 0), "/usr/bin/restic") == MINIMUM_VERSION
    assert require_supported(ResticVersion(0, 17, 3), "r") == ResticVersion(0, 17, 3)


def test_too_old_names_version_found_and_what_to_install():
    with pytest.raises(ResticTooOld) as raised:
        require_supported(ResticVersion(0, 9, 6, "restic 0.9.6 compiled with go1.13"),
                          "/opt/old/restic")
    message = str(raised.value)
    assert "/opt/old/restic" in message and "0.9.6" in message and "0.14.0" in message
    assert "apt-get install restic" in message


def test_version_is_cached_per_binary():
    clear_cache()
    calls = []

    def detect(version):
        calls.append(version)
        return version

    first = cached_version("/nonexistent/a/restic", lambda: detect(ResticVersion(0, 14, 0)))
    again = cached_version("/nonexistent/a/restic", lambda: detect(ResticVersion(0, 99, 0)))
    other = cached_version("/nonexistent/b/restic", lambda: detect(ResticVersion(0, 15, 1)))
    assert first == again == ResticVersion(0, 14, 0)
    assert other == ResticVersion(0, 15, 1)
    assert len(calls) == 2
    clear_cache()


def test_missing_binary_says_how_to_install():
    restic = Restic(environ={"DRD_RESTIC": "/nonexistent/bin/restic", "PATH": "/nonexistent"})
    with pytest.raises(ResticNotFound) as raised:
        restic.binary  # noqa: B018 -- the property looks the binary up
    assert str(raised.value).startswith("restic not found at /nonexistent/bin/restic: ")
    assert "apt-get install restic" in str(raised.value)
    by_name = Restic("restic-not-here", environ={"PATH": "/nonexistent"})
    with pytest.raises(ResticNotFound, match="restic not found at restic-not-here"):
        by_name.binary  # noqa: B018
