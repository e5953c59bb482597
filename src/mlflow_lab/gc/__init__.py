"""Garbage collection: what users deleted (runs, experiments, logged models) removed for good
once it is old enough, rows and artifacts, by MLflow's own `mlflow gc` (docs/operations.md).

- `bucket`: the bucket's size, and a folder deleted but for what the registry downloads from.
- `catalog`: what is deleted, and where the registry downloads from (MLflow's tables, read only).
- `artifact_endpoint`: the loopback artifact server `mlflow gc` deletes the lab's mlflow-artifacts:/ through.
- `collection`: one collection: `mlflow gc`, what it leaves (experiments' folders), the report.
- `durations`: the durations it reads (--older-than, LAB_GC_OLDER_THAN, LAB_GC_INTERVAL).
- `health`: how the scheduled collector's last collection went, for its health check.
- `__main__`: the program beside the tracking server: once, on a schedule, its health check.
- `command`: `lab gc`, which has the runner run one collection beside the tracking server.
"""
