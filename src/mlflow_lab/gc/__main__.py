"""`python -m mlflow_lab.gc`: garbage collection beside the tracking server, with its settings
and its access to the database and the bucket (the environment of compose.yaml's `mlflow`).

    python -m mlflow_lab.gc [--older-than 30d]   one collection (`lab gc`, the Kubernetes CronJob)
    python -m mlflow_lab.gc --schedule           one every LAB_GC_INTERVAL (compose.yaml's `gc`)
    python -m mlflow_lab.gc --healthy            exit 0 if the scheduled collector's last collection succeeded

A failure is one line, `gc: <sentence>`, on standard error, and a non-zero exit. The health
check runs every few seconds: until it has answered, nothing heavier than the standard library
is imported (the settings schema, boto3, SQLAlchemy, MLflow).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from mlflow_lab.errors import LabError
from mlflow_lab.gc.health import healthy, record

if TYPE_CHECKING:
    from mlflow_lab.settings import Settings


def once(settings: Settings, older_than: str) -> str:
    from mlflow_lab.gc.collection import collect
    from mlflow_lab.gc.durations import seconds_of

    seconds_of("--older-than", older_than)
    return str(collect(settings, older_than))


def on_schedule(settings: Settings) -> None:
    """A collection now and every LAB_GC_INTERVAL; a failed one is reported and the next one runs
    on time (a crash would make Compose start the service, and so a collection, again at once)."""
    from mlflow_lab.gc.durations import seconds_of

    every = seconds_of("LAB_GC_INTERVAL", settings["LAB_GC_INTERVAL"])
    if every <= 0:
        raise LabError("LAB_GC_INTERVAL must be longer than 0s.")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as PID 1 of a container, too
    while True:
        try:
            report = once(settings, settings["LAB_GC_OLDER_THAN"])
            print(report, flush=True)
            record(os.environ, True, report.splitlines()[0])
        except Exception as exc:  # this collection failed; the service goes on
            message = str(exc) if isinstance(exc, LabError) else f"{exc.__class__.__name__}: {exc}"
            print(f"gc: failed: {message}", file=sys.stderr, flush=True)
            record(os.environ, False, message)
        upcoming = datetime.now(UTC) + timedelta(seconds=every)
        print(f"gc: next collection at {upcoming:%Y-%m-%d %H:%M:%S} UTC", flush=True)
        time.sleep(every)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlflow_lab.gc", description=(__doc__ or "").split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--older-than", help="a duration such as 30d (default LAB_GC_OLDER_THAN)")
    mode.add_argument("--schedule", action="store_true", help="collect every LAB_GC_INTERVAL")
    mode.add_argument("--healthy", action="store_true", help="whether the last scheduled collection succeeded")
    args = parser.parse_args(argv)
    if args.healthy:
        sys.exit(0 if healthy(os.environ) else 1)
    from mlflow_lab.settings import Settings

    settings = Settings.load(env_file=None)
    try:
        settings.validate("gc", passwords=False)
        os.environ.update(settings.backend_store_env())  # the catalog's connections (libpq reads it)
        if args.schedule:
            on_schedule(settings)
        else:
            print(once(settings, args.older_than or settings["LAB_GC_OLDER_THAN"]), flush=True)
    except LabError as exc:
        sys.exit(f"gc: {exc}")


if __name__ == "__main__":
    main()
