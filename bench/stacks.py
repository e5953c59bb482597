"""The throwaway stack a benchmark runs against: native (default) or Compose (BENCH_RUNNER=compose)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from mlflow_lab.compose import ComposeStack
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import Settings
from tests.native.harness import ephemeral_stack

RUNNERS = ("native", "compose")


@dataclass
class BenchStack:
    runner: str
    settings: Settings
    stack: NativeStack | ComposeStack

    def mlflow_address(self) -> tuple[str, int]:
        """The tracking server without nginx (Compose: published on loopback by the tests' override)."""
        if isinstance(self.stack, ComposeStack):
            return self.stack.address("mlflow", self.settings.int("MLFLOW_PORT"))
        return "127.0.0.1", self.settings.int("MLFLOW_PORT")

    def native(self) -> NativeStack:
        if not isinstance(self.stack, NativeStack):
            raise SystemExit("this benchmark runs on the native runner only (BENCH_RUNNER=native)")
        return self.stack


@contextlib.contextmanager
def bench_stack(runner: str):
    if runner == "compose":
        from tests.compose.harness import compose_stack  # base images, Compose v2, throwaway .env

        with compose_stack() as (stack, settings, _):
            yield BenchStack("compose", settings, stack)
    elif runner == "native":
        with ephemeral_stack() as stack:
            yield BenchStack("native", stack.settings, stack)
    else:
        raise SystemExit(f"BENCH_RUNNER must be one of {', '.join(RUNNERS)}; got {runner!r}")
