"""The one domain error of the lab, and the CLI edge that turns it into a clean exit.

Every expected failure (bad configuration, a missing model, bad input) raises
LabError with a sentence meant for the user; the CLI edge prints it and exits
non-zero without a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# MLflow's answers to an account that may not do what it asked: expected in a shared lab.
REFUSALS = {"PERMISSION_DENIED": "may not do that", "UNAUTHENTICATED": "is not a known account, or its password is wrong"}


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
    except Exception as exc:
        code = getattr(exc, "error_code", None)  # an MlflowException's, without importing MLflow here
        if code not in REFUSALS:
            raise
        who = os.environ.get("MLFLOW_TRACKING_USERNAME") or "this account"
        print(f"error: MLflow refused: {who} {REFUSALS[code]} ({code}).", file=sys.stderr)
        raise SystemExit(LabError.exit_code) from None
