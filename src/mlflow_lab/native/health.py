"""compose.yaml's health checks, run on the host."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def passes(test: list[str], env: Mapping[str, str]) -> bool:
    """Compose's `test` (["CMD", ...] or ["CMD-SHELL", "..."]) exits 0 within 10 s when run with
    `env`; its `python` is this environment's interpreter."""
    if test[0] == "CMD-SHELL":
        argv = ["/bin/sh", "-c", test[1]]
    else:
        argv = [sys.executable if test[1] == "python" else test[1], *test[2:]]
    try:
        return subprocess.run(argv, env=env, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
