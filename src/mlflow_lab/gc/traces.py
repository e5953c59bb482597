"""Trace archival without MLflow's job runner: MLflow's own archival pass, run by the lab.

MLflow 3.17.2 moves the spans of old traces from the SQL store to an artifact store
(MLFLOW_TRACE_ARCHIVAL_CONFIG) only in a periodic task of its job runner (huey consumers,
~1.7 GB resident while idle), which the lab keeps off (MLFLOW_SERVER_ENABLE_JOB_EXECUTION).
The pass itself is a function of MLflow's (mlflow.tracing.trace_archival_service's
run_trace_archival_scheduler, what its periodic task calls), and this program calls it:

    python -m mlflow_lab.gc.traces              one pass now, beside the tracking server
    python -m mlflow_lab.gc.traces --schedule   a pass every LAB_TRACE_ARCHIVAL_INTERVAL (the tracking
                                                server starts it), each in a process of its own

Each pass archives, in every workspace, the traces older than LAB_TRACE_RETENTION (or their
experiment's shorter retention tag, or all of an experiment that asked for `--trace-archive-now`)
and prints how many. The scheduler never imports MLflow: between passes it holds the lab's
settings module, not MLflow's ~1.7 GB job runner.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from mlflow_lab.errors import LabError

if TYPE_CHECKING:
    from mlflow_lab.settings import Settings

# The first pass waits for the server's start (its workers' imports) to be over.
FIRST_PASS_DELAY_SECONDS = 60


def pass_environment(settings: Settings, config_path: str) -> dict[str, str]:
    """What MLflow's periodic task has in its process (mlflow.server's job environment): the
    backend store, the default artifact root, workspaces on (as the server runs), the config,
    and the bucket's credentials."""
    from mlflow.server.constants import BACKEND_STORE_URI_ENV_VAR

    from mlflow_lab.stack.tracking_server import artifacts_destination

    uri = settings.backend_store_uri()
    return {
        **settings.backend_store_env(),
        **artifacts_destination(settings)[1],
        "MLFLOW_BACKEND_STORE_URI": uri,
        BACKEND_STORE_URI_ENV_VAR: uri,  # where MLflow finds the workspace store
        "MLFLOW_DEFAULT_ARTIFACT_ROOT": "mlflow-artifacts:/",
        "MLFLOW_ENABLE_WORKSPACES": "true",
        "MLFLOW_TRACE_ARCHIVAL_CONFIG": config_path,
    }


# MLflow lets a process run a pass only once its config's interval_seconds has passed since the
# process's previous pass, counted from time.monotonic()'s zero (the machine's boot): each pass
# here is a fresh process, so its own config says 1 s, and the schedule is the scheduler's.
PASS_PROCESS_INTERVAL = 1


def once(settings: Settings) -> str:
    """One pass of MLflow's archival in every workspace: what MLflow's periodic task runs
    (run_trace_archival_scheduler, with the store it builds from MLFLOW_BACKEND_STORE_URI)."""
    from mlflow_lab.stack.tracking_server import write_trace_archival_config

    config = write_trace_archival_config(settings, PASS_PROCESS_INTERVAL)
    os.environ.update(pass_environment(settings, str(config)))
    from mlflow.exceptions import MlflowException
    from mlflow.tracing.trace_archival_config import get_trace_archival_server_config
    from mlflow.tracing.trace_archival_service import run_trace_archival_scheduler

    try:
        get_trace_archival_server_config()  # an invalid config raises here; MLflow's pass would skip it quietly
    except MlflowException as exc:
        raise LabError(exc.message) from None
    archived = run_trace_archival_scheduler()
    return (
        f"traces: archived {archived} trace(s) older than {settings['LAB_TRACE_RETENTION']} "
        f"(or asked for by their experiment) to {settings['S3_BUCKET']}"
    )


ONE_PASS = [sys.executable, "-m", "mlflow_lab.gc.traces"]


def on_schedule(
    interval: float, first_delay: float = FIRST_PASS_DELAY_SECONDS, passes: int | None = None, argv: list[str] = ONE_PASS
) -> None:
    """A pass after `first_delay`, then every `interval` seconds (`passes` of them; None: for ever),
    each `argv` in a process of its own; a failed pass is reported and the next one runs on time."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(first_delay)
    done = 0
    while passes is None or done < passes:
        started = time.monotonic()
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode == 0:
            print(result.stdout.strip(), flush=True)
        else:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            print(f"traces: archival pass failed: {last}", file=sys.stderr, flush=True)
        done += 1
        if passes is None or done < passes:
            time.sleep(max(0.0, interval - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlflow_lab.gc.traces", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--schedule", action="store_true", help="a pass every LAB_TRACE_ARCHIVAL_INTERVAL")
    args = parser.parse_args(argv)
    from mlflow_lab.settings import Settings
    from mlflow_lab.settings_schema import duration_seconds

    settings = Settings.load(env_file=None)
    try:
        settings.validate("mlflow", passwords=False)
        if args.schedule:
            on_schedule(duration_seconds(settings["LAB_TRACE_ARCHIVAL_INTERVAL"]))
        else:
            print(once(settings), flush=True)
    except LabError as exc:
        sys.exit(f"traces: {exc}")


if __name__ == "__main__":
    main()
