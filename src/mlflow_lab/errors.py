"""The one domain error of the lab, and the CLI edge that turns it into a clean exit.

Every expected failure (bad configuration, a missing model, bad input) raises
LabError with a sentence meant for the user; the CLI edge prints it and exits
non-zero without a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class LabError(Exception):
    """An expected failure, explained in one sentence for the user."""

    exit_code = 1


def run_cli(app: Callable[[], object]) -> None:
    """Run a CLI app; a LabError becomes `error: <sentence>` on stderr and its exit code."""
    try:
        app()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
