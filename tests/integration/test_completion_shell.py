"""The installed ``drd`` and ``drd-agent`` complete in a real bash: the printed script is
sourced, bash's completion function called as bash would call it, and COMPREPLY read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.integration

# The function is called the way bash calls a `complete -F` function: $1 the command,
# COMP_WORDS and COMP_CWORD the words typed so far.
BASH = """
set -e
source <("$PROG" completion bash)
COMP_WORDS=($WORDS)
COMP_CWORD=$CWORD
COMPREPLY=()
"_${PROG//-/_}_completion" "$PROG"
printf '%s\\n' "${COMPREPLY[@]}"
"""


@pytest.mark.parametrize(("prog", "words", "cword", "expected"), [
    ("drd", "drd dr", 1, ["drill"]),
    ("drd-agent", "drd-agent en", 1, ["enroll"]),
])
def test_bash_completes_through_the_installed_script(prog: str, words: str, cword: int,
                                                      expected: list[str]) -> None:
    bash = shutil.which("bash")
    need("bash", bash is not None, "apt-get install -y bash")
    need(prog, (BIN / prog).exists(), "pip install -e . (make test does)")
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                   "PROG": prog, "WORDS": words, "CWORD": str(cword)}
    result = subprocess.run([bash, "-c", BASH], capture_output=True, text=True,
                            env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected, result.stderr
