"""The throwaway lab a benchmark runs against: native (default) or Compose (BENCH_RUNNER=compose),
from the lab's test kit (mlflow_lab.testing). Under Compose it is the tests' own lab: STAND-IN
base images where no registry answers, and the override that publishes the tracking server's
port on loopback for the direct path."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mlflow_lab.native.runner import NativeStack
from mlflow_lab.testing.stacks import Lab, native_lab

RUNNERS = ("native", "compose")


def mlflow_address(lab: Lab) -> tuple[str, int]:
    """The tracking server without nginx."""
    return lab.stack.address("mlflow", "MLFLOW_PORT")


def native_stack(lab: Lab) -> NativeStack:
    if not isinstance(lab.stack, NativeStack):
        raise SystemExit("this benchmark runs on the native runner only (BENCH_RUNNER=native)")
    return lab.stack


@contextlib.contextmanager
def bench_lab(runner: str) -> Iterator[Lab]:
    if runner == "compose":
        from tests.compose.harness import compose_test_lab

        with compose_test_lab() as lab:
            yield lab
    elif runner == "native":
        with native_lab() as lab:
            yield lab
    else:
        raise SystemExit(f"BENCH_RUNNER must be one of {', '.join(RUNNERS)}; got {runner!r}")
