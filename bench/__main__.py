"""Run the benchmarks (all, or those named: `python -m bench scoring`), print the results and
keep them in bench/results/ (bench/results.py)."""

from __future__ import annotations

import os
import platform
import sys

from bench import model_api, results, scoring, startup, traces, tracking
from bench.stacks import bench_lab

# Need a running lab: they share one throwaway stack.
STACK_BENCHMARKS = {"tracking": tracking.run, "traces": traces.run, "model_api": model_api.run}
LOCAL_BENCHMARKS = {"scoring": scoring.run, "startup": startup.run}  # start what they need


def main(names: list[str]) -> None:
    chosen = names or [*STACK_BENCHMARKS, *LOCAL_BENCHMARKS]
    unknown = set(chosen) - set(STACK_BENCHMARKS) - set(LOCAL_BENCHMARKS)
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join([*STACK_BENCHMARKS, *LOCAL_BENCHMARKS])}"
        )
    with results.recorded(names):
        run(chosen)


def run(chosen: list[str]) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for name in chosen:
        if name in LOCAL_BENCHMARKS:
            LOCAL_BENCHMARKS[name]()
    stack_names = [name for name in chosen if name in STACK_BENCHMARKS]
    if stack_names:
        runner = os.environ.get("BENCH_RUNNER", "native")
        print(f"stack: {runner} runner")
        with bench_lab(runner) as lab:
            for name in stack_names:
                STACK_BENCHMARKS[name](lab)


if __name__ == "__main__":
    main(sys.argv[1:])
