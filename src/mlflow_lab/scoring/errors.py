"""One-line reasons for refused input, shared by batch scoring and the model API."""

from __future__ import annotations

import json


class RefusedRows(Exception):
    """The model refused a batch of rows, for the reason given (short_reason); the caller names the rows."""


def short_reason(exc: BaseException) -> str:
    """Why the model refused the input, in one line, without the input itself.

    MLflow's schema errors embed the whole input frame ("Failed to enforce schema of data
    '<frame>' with schema '...'. Error: <reason>"): keep only the reason, so neither a log
    line nor an API response echoes the caller's data.
    """
    for cause in (exc, exc.__cause__):
        if isinstance(cause, (json.JSONDecodeError, UnicodeDecodeError)):  # MLflow wraps it, with the input
            return f"malformed JSON body: {cause}"
    message = str(getattr(exc, "message", exc))
    reason = message.rsplit("Error: ", 1)[-1] if "Error: " in message else message
    lines = reason.strip().splitlines()
    return lines[0] if lines else type(exc).__name__
