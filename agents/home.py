"""Where the agent keeps its state (``--home``, ``$DRD_AGENT_HOME``, or a default)."""

from __future__ import annotations

import os
from pathlib import Path

ENROLLMENT_FILE = "agent.yaml"


def default_agent_home() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/drd-agent")
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "drd-agent"


def resolve_agent_home(option: str | os.PathLike | None) -> Path:
    chosen = option or os.environ.get("DRD_AGENT_HOME")
    return Path(chosen).expanduser().absolute() if chosen else default_agent_home()


def is_enrolled(home: Path) -> bool:
    return (home / ENROLLMENT_FILE).is_file()
