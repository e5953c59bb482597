"""Garbage collection: what users deleted (runs, experiments, logged models) removed for good
once it is old enough, rows and artifacts, by MLflow's own `mlflow gc` (docs/operations.md).

- `bucket`: the bucket's size, and a folder deleted but for what the registry downloads from.
- `catalog`: what is deleted, and where the registry downloads from (MLflow's tables, read only).
- `artifact_endpoint`: the loopback artifact server `mlflow gc` deletes the lab's mlflow-artifacts:/ through.
- `collection`: one collection: `mlflow gc`, what it leaves (experiments' folders), the report.
- `__main__`: the program beside the tracking server: once, on a schedule, its health check.
- `command`: `lab gc`, which has the runner run one collection beside the tracking server.
"""

from __future__ import annotations

from mlflow_lab.errors import LabError
from mlflow_lab.settings_schema import DURATION_TEXT, duration_seconds


def seconds_of(name: str, value: str) -> float:
    """A duration's seconds; a LabError naming the option or setting it came from."""
    try:
        return duration_seconds(value)
    except ValueError:
        raise LabError(f"{name} must be {DURATION_TEXT}; got {value!r}.") from None
