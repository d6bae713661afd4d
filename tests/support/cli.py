"""``tcsms-poller ...`` as a real child process, with a clean environment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

__all__ = ["BASE_ENV", "run_cli"]

BASE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}


def run_cli(
    *argv: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to its end; ``env`` is added to ``BASE_ENV`` (nothing else is inherited)."""
    return subprocess.run(
        [sys.executable, "-m", "tcsms_poller", *argv],
        capture_output=True,
        text=True,
        check=False,
        env={**BASE_ENV, **(env or {})},
        timeout=timeout,
    )
