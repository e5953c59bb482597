"""Batch scoring of the wine model end to end (read, predict, write): the lab's job vs the naive way.

The naive way is what the book does: pandas `read_csv` -> `pyfunc.predict` -> `to_csv`.
Both run as fresh processes on the same file with the same local model. Two figures:
the pipeline (read, predict, write) as each process reports it, and the process wall time
including imports and model loading; the targets are 8x and 4x. Peak RSS is measured by a
small launcher process (`wait4`), because a child forked straight from this big process
would inherit its high-water mark.
Then the job scores a file ten times larger, to show that its memory does not grow.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from mlflow.models import infer_signature
from sklearn.linear_model import ElasticNet

from mlflow_lab.jobs import train_wine
from mlflow_lab.scoring import csv_passthrough

JOB_SETTINGS = (
    f"`lab-job score --no-log-run`, CSV passthrough, {csv_passthrough.BLOCK_BYTES >> 20} MB blocks, "
    f"{csv_passthrough.THREADS} threads, {csv_passthrough.IN_FLIGHT} blocks in flight"
)

NAIVE = """
import sys, time, mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
started = time.perf_counter()
frame = pd.read_csv(sys.argv[2], dtype="float64")
frame["prediction"] = model.predict(frame)
frame.to_csv(sys.argv[3], index=False)
print(f"scored {len(frame)} rows in {time.perf_counter() - started:.2f} s")
"""
LAUNCHER = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(f"launcher: exit={os.waitstatus_to_exitcode(status)} wall={time.perf_counter() - started} maxrss_kb={usage.ru_maxrss}")
"""


def write_input(path: Path, rows: int, seed: int = 0) -> None:
    """Rows resampled from the wine data with 2% noise, 3 decimals, written in 1M-row slices."""
    x_train = train_wine.load_data(42)[0]
    rng = np.random.default_rng(seed)
    with pa_csv.CSVWriter(path, pa.schema([(name, pa.float64()) for name in x_train.columns])) as writer:
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            picked = x_train.to_numpy()[rng.integers(0, len(x_train), n)]
            values = np.round(picked * rng.normal(1.0, 0.02, picked.shape), 3)
            writer.write_table(pa.table({name: values[:, i] for i, name in enumerate(x_train.columns)}))


@dataclass(frozen=True)
class Measured:
    pipeline_s: float  # read + predict + write, as the process reports it
    wall_s: float  # the whole process: imports, model load, pipeline
    peak_mb: float


def measure(command: list[str]) -> Measured:
    output = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True).stdout
    launcher = dict(pair.split("=") for pair in re.search(r"launcher: (.*)", output)[1].split())
    if launcher["exit"] != "0":
        raise RuntimeError(f"{' '.join(command)} failed")
    pipeline = float(re.search(r"rows .*in ([\d.]+) s", output)[1])
    return Measured(pipeline, float(launcher["wall"]), int(launcher["maxrss_kb"]) / 1024)


def run(rows: int = 1_000_000, large_rows: int = 10_000_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        work = Path(tmp)
        x_train, _, y_train, _ = train_wine.load_data(42)
        model = ElasticNet(random_state=42).fit(x_train, y_train)
        model_dir = work / "model"
        mlflow.sklearn.save_model(model, model_dir, signature=infer_signature(x_train, model.predict(x_train)))
        small, large = work / "small.csv", work / "large.csv"
        write_input(small, rows)
        job_command = [sys.executable, "-m", "mlflow_lab.jobs", "score", "--model-uri", str(model_dir), "--no-log-run"]

        naive = measure([sys.executable, "-c", NAIVE, str(model_dir), str(small), str(work / "naive.csv")])
        job = measure([*job_command, str(small), "--output", str(work / "job.csv")])
        small.unlink()
        write_input(large, large_rows, seed=1)
        big = measure([*job_command, str(large), "--output", str(work / "large.predictions.csv")])

    print("\n== batch scoring, wine model (read CSV, predict, write CSV) ==")
    print(f"naive pandas: read_csv, pyfunc.predict, to_csv; lab job: {JOB_SETTINGS}")
    for label, count, m in (("naive pandas", rows, naive), ("lab job", rows, job), ("lab job", large_rows, big)):
        print(
            f"{label:12} {count:>10,} rows: pipeline {m.pipeline_s:6.2f} s ({count / m.pipeline_s:>9,.0f} rows/s)"
            f"  process {m.wall_s:6.2f} s  peak RSS {m.peak_mb:5.0f} MB"
        )
    speedup, memory_growth = naive.pipeline_s / job.pipeline_s, big.peak_mb / job.peak_mb
    print(
        f"speed-up vs naive: pipeline {speedup:.2f}x (target: at least 8x), "
        f"whole process {naive.wall_s / job.wall_s:.2f}x (target: at least 4x)"
    )
    print(f"peak RSS, {large_rows // rows}x the rows: {memory_growth:.3f}x (target: at most 1.20x)")
    return {"speedup": speedup, "process_speedup": naive.wall_s / job.wall_s, "memory_growth": memory_growth}
