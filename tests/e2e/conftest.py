"""End-to-end fixtures: the real ``drd`` and ``drd-agent`` commands, a real ``drd serve``,
real SeaweedFS stores and real restic."""

from tests.integration.conftest import seaweed, seaweed_session  # noqa: F401 -- fixtures
