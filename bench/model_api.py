"""The model API under load, through nginx with basic auth: the lab's server vs MLServer's and MLflow's.

One stack, one run: wine-quality is trained and promoted, then the model-api service is
replaced by one with each configuration (MODEL_SERVER=lab, the default, and with a larger
batch; MODEL_SERVER=mlserver with the previous defaults; then MODEL_SERVER=mlflow with 1
and 2 workers). wrk sends one-row requests at 1 and 64
connections (req/s, p50, p99) and 1,000-row requests at 2 connections (rows/s, against
in-process `pyfunc.predict` on the same rows).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow

from bench.stacks import native_stack
from mlflow_lab.jobs import promote, sample_input, train_wine
from mlflow_lab.native import ospackages
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import ENV_EXAMPLE, parse_env_file
from mlflow_lab.testing.stacks import Lab, extra_model_api

MODEL = "wine-quality"
SECONDS = 6
TUNABLES = ("MODEL_SERVER", "MODEL_API_WORKERS", "MODEL_API_MAX_BATCH_SIZE", "MODEL_API_MAX_BATCH_TIME")


def _config(server, workers, batch_size, batch_time) -> tuple[str, dict[str, str]]:
    """(label, settings overrides) of one model-api configuration: batch = requests per batch /
    longest wait (MLServer's batcher always waits; the lab's only while waiting gathers requests)."""
    batching = "" if int(batch_size) <= 1 else f" batch {batch_size}/{float(batch_time) * 1000:g}ms"
    return f"{server} w{workers}{batching}", dict(zip(TUNABLES, map(str, (server, workers, batch_size, batch_time)), strict=True))


DEFAULT = _config(*(parse_env_file(ENV_EXAMPLE)[name] for name in TUNABLES))  # the lab's defaults
# The lab's fast path (default), then MLServer's own request handling with the previous defaults.
CONFIGS = list(dict([DEFAULT, _config("lab", 0, 16, 0.001), _config("mlserver", 0, 16, 0.001)]).items())


WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")


def _load(url: str, body: bytes, auth: tuple[str, str], connections: int, seconds: int) -> dict:
    """wrk (C, one thread) keeps `connections` requests in flight: a Python client would take
    much of the CPU the servers need on a 2-core machine. A 1 s run first warms up."""
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        env = {**os.environ, "BODY": file.name, "AUTH": "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()}
        for duration in (1, seconds):
            done = subprocess.run(
                ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(WRK_SCRIPT), url],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0 or "RESULT " not in done.stdout:
                raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    fields = dict(item.split("=") for item in done.stdout.split("RESULT ", 1)[1].split())
    return {
        "rps": int(fields["requests"]) / float(fields["seconds"]),
        "p50_ms": float(fields["p50_ms"]),
        "p99_ms": float(fields["p99_ms"]),
        "errors": int(fields["non2xx"]) + int(fields["socket_errors"]),
    }


def _measure(base: str, auth, bodies: dict, v2: bool) -> dict:
    url = f"{base}/v2/models/{MODEL}/infer" if v2 else f"{base}/models/{MODEL}/invocations"
    form = "v2" if v2 else "split"
    result = {f"c{n}": _load(url, bodies[form][0], auth, n, SECONDS) for n in (1, 64)}
    rows = _load(url, bodies[form][1000], auth, 2, SECONDS)
    result["batch_rows_per_s"] = rows["rps"] * 1000
    result["batch_errors"] = rows["errors"]
    return result


def _bodies(frame) -> dict:
    return {
        "split": json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode(),
        "v2": json.dumps(
            {"inputs": [{"name": c, "shape": [len(frame)], "datatype": "FP64", "data": frame[c].tolist()} for c in frame.columns]}
        ).encode(),
    }


@contextlib.contextmanager
def _api_with(stack: NativeStack, overrides: dict):
    """The model-api program replaced, on its port behind the same nginx, by one with other settings
    (quicker than restarting the whole supervised stack)."""
    stack.supervisorctl("stop", "model-api", check=False)
    try:
        with extra_model_api(stack, overrides, f"{stack.settings.tracking_uri('127.0.0.1')}/v2/models/{MODEL}/ready"):
            yield
    finally:
        stack.supervisorctl("start", "model-api", check=False)


def run(lab: Lab) -> dict:
    stack = native_stack(lab)
    ospackages.ensure_installed({"wrk": "wrk"}, needed_by="the model API benchmark")
    s = stack.settings
    base, auth = s.tracking_uri("127.0.0.1"), (s["LAB_USER"], s["LAB_PASSWORD"])
    os.environ.update(MLFLOW_TRACKING_URI=base, MLFLOW_TRACKING_USERNAME=auth[0], MLFLOW_TRACKING_PASSWORD=auth[1])
    mlflow.set_tracking_uri(base)
    train_wine.train(experiment="bench-model-api", register_as=MODEL, n_iter=2)
    promote.promote(mlflow.MlflowClient(), MODEL, "1", force=True)

    rows = sample_input.build(MODEL, rows=1000, seed=1)
    one, thousand = _bodies(sample_input.build(MODEL, rows=1, seed=0)), _bodies(rows)
    bodies = {form: {0: one[form], 1000: thousand[form]} for form in one}
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/1")
    in_process_rows_per_s = 1000 / _predict_seconds(model, rows)

    results = {}
    for label, overrides in CONFIGS:
        with _api_with(stack, overrides):
            results[f"{label} V2"] = _measure(base, auth, bodies, True)
            results[f"{label} /invocations"] = _measure(base, auth, bodies, False)
    for workers in ("1", "2"):
        with _api_with(stack, {"MODEL_SERVER": "mlflow", "MODEL_API_WORKERS": workers}):
            results[f"mlflow w{workers} /invocations"] = _measure(base, auth, bodies, False)
    _report(results, in_process_rows_per_s)
    return {"results": results, "in_process_rows_per_s": in_process_rows_per_s}


def _predict_seconds(model, rows, rounds: int = 5, calls: int = 20) -> float:
    """In-process predict time: the fastest of several rounds' medians, so that a noisy moment
    on a shared machine cannot make the baseline look slow (and the API look good against it)."""
    medians = []
    for _ in range(rounds):
        timings = []
        for _ in range(calls):
            started = time.perf_counter()
            model.predict(rows)
            timings.append(time.perf_counter() - started)
        medians.append(statistics.median(timings))
    return min(medians)


def _report(results: dict, in_process_rows_per_s: float) -> None:
    print(f"\n== model API through nginx, one-row requests ({SECONDS:.0f} s each) and 1,000-row batches ==")
    print(
        f"{'server':34} {'1 conn req/s':>12} {'p50 ms':>7} {'64 conn req/s':>13} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'batch rows/s':>12} {'errors':>6}"
    )
    for label, r in results.items():
        print(
            f"{label:34} {r['c1']['rps']:12.0f} {r['c1']['p50_ms']:7.2f} {r['c64']['rps']:13.0f} "
            f"{r['c64']['p50_ms']:7.1f} {r['c64']['p99_ms']:7.1f} {r['batch_rows_per_s']:12,.0f} "
            f"{r['c1']['errors'] + r['c64']['errors'] + r['batch_errors']:6d}"
        )
    print(f"in-process pyfunc.predict, 1,000 rows: {in_process_rows_per_s:,.0f} rows/s")
    label, overrides = DEFAULT
    lab_v2, lab_inv = results[f"{label} V2"], results[f"{label} /invocations"]
    # The same number of processes doing inference: w0 (in the server process) is one, like mlflow w1.
    same = f"mlflow w{max(1, int(overrides['MODEL_API_WORKERS']))}"
    mlflow_same = results[f"{same} /invocations"]
    print(f"\nlab defaults ({label}) vs {same}:")
    print(
        f"  64 conn throughput, V2: {lab_v2['c64']['rps'] / mlflow_same['c64']['rps']:.2f}x; /invocations: "
        f"{lab_inv['c64']['rps'] / mlflow_same['c64']['rps']:.2f}x (target: at least 2x)"
    )
    print(f"  64 conn p99, V2: {lab_v2['c64']['p99_ms']:.0f} ms (target: under 100 ms)")
    print(
        f"  1 conn p50 ratio, V2: {lab_v2['c1']['p50_ms'] / mlflow_same['c1']['p50_ms']:.2f}; /invocations: "
        f"{lab_inv['c1']['p50_ms'] / mlflow_same['c1']['p50_ms']:.2f} (target: at most 1.2)"
    )
    print(
        f"  1,000-row batches vs in-process: V2 {lab_v2['batch_rows_per_s'] / in_process_rows_per_s:.0%}, "
        f"/invocations {lab_inv['batch_rows_per_s'] / in_process_rows_per_s:.0%} (target: at least 50%)"
    )
