"""Where the agent keeps its state (``--home``, ``$DRD_AGENT_HOME``, or a default)."""

from __future__ import annotations

import os
from pathlib import Path

from drd.config import resolve_home

ENROLLMENT_FILE = "agent.yaml"


def resolve_agent_home(option: str | os.PathLike | None) -> Path:
    """The agent's home: the option, else ``$DRD_AGENT_HOME``, else ``/var/lib/drd-agent``
    for root or ``~/.local/share/drd-agent`` for a user."""
    return resolve_home(option, variable="DRD_AGENT_HOME", name="drd-agent")


def is_enrolled(home: Path) -> bool:
    return (home / ENROLLMENT_FILE).is_file()
