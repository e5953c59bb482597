"""The durations garbage collection reads: --older-than, LAB_GC_OLDER_THAN, LAB_GC_INTERVAL."""

from __future__ import annotations

from mlflow_lab.errors import LabError
from mlflow_lab.settings_schema import DURATION_TEXT, duration_seconds


def seconds_of(name: str, value: str) -> float:
    """A duration's seconds; a LabError naming the option or setting it came from."""
    try:
        return duration_seconds(value)
    except ValueError:
        raise LabError(f"{name} must be {DURATION_TEXT}; got {value!r}.") from None
