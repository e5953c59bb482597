"""`lab gc`: one garbage collection, run by the runner beside the tracking server (in its
container under Compose, natively as its program) with the server's own settings and access:
it needs no account of the lab, and the caller's machine needs no way into the stores."""

from __future__ import annotations

from collections.abc import Callable

from mlflow_lab.errors import LabError
from mlflow_lab.gc.durations import seconds_of
from mlflow_lab.runners import Runner

SERVICE = "mlflow"  # whose container or program environment the collection runs in
PROGRAM = ["python", "-m", "mlflow_lab.gc"]


def run(older_than: str, runner: Callable[[], Runner]) -> str:
    """What the collection removed and the bucket's size before and after; a LabError if it failed.
    `runner` is asked for once the input is known to be good."""
    seconds_of("--older-than", older_than)
    result = runner().exec(SERVICE, [*PROGRAM, "--older-than", older_than])
    if result.returncode != 0:
        said = (result.stderr.strip() or result.stdout.strip() or "no message").splitlines()[-1]
        raise LabError(said.removeprefix("gc: ").removeprefix("error: ").rstrip(".") + ".")
    return result.stdout.rstrip("\n")
