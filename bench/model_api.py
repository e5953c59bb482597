"""The model API under load, through nginx with basic auth: MLServer configurations vs MLflow's scoring server.

One stack, one run: wine-quality is trained and promoted, then the model-api service is
replaced by one with each configuration (MLServer with 1 and 2 workers, batching off
and on; then MODEL_SERVER=mlflow with 1 and 2 workers). One-row requests at 1 and 64
connections (req/s, p50, p99), and 1,000-row /invocations requests (rows/s) against
in-process `pyfunc.predict` on the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time

import aiohttp
import mlflow

from mlflow_lab.jobs import promote, sample_input, train_wine
from mlflow_lab.native.ephemeral import extra_model_api
from mlflow_lab.native.runner import NativeStack

MODEL = "wine-quality"
SECONDS = 6.0
DEFAULT = "mlserver w1 batch 16/1ms"  # the lab's defaults in .env.example
CONFIGS = [  # (label, settings overrides)
    ("mlserver w1", {"MODEL_API_WORKERS": "1", "MODEL_API_MAX_BATCH_SIZE": "1", "MODEL_API_MAX_BATCH_TIME": "0"}),
    ("mlserver w2", {"MODEL_API_WORKERS": "2", "MODEL_API_MAX_BATCH_SIZE": "1", "MODEL_API_MAX_BATCH_TIME": "0"}),
    (DEFAULT, {"MODEL_API_WORKERS": "1", "MODEL_API_MAX_BATCH_SIZE": "16", "MODEL_API_MAX_BATCH_TIME": "0.001"}),
    ("mlserver w1 batch 32/5ms", {"MODEL_API_WORKERS": "1", "MODEL_API_MAX_BATCH_SIZE": "32", "MODEL_API_MAX_BATCH_TIME": "0.005"}),
    ("mlserver w2 batch 16/1ms", {"MODEL_API_WORKERS": "2", "MODEL_API_MAX_BATCH_SIZE": "16", "MODEL_API_MAX_BATCH_TIME": "0.001"}),
]


async def _load(url: str, body: bytes, auth: tuple[str, str], connections: int, seconds: float) -> dict:
    latencies, errors = [], 0
    connector = aiohttp.TCPConnector(limit=connections)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, auth=aiohttp.BasicAuth(*auth)) as session:
        async def client(deadline: float) -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client(time.perf_counter() + 1.0) for _ in range(connections)))  # warm-up
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(client(started + seconds) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "errors": errors}


def _measure(base: str, auth, bodies: dict, v2: bool) -> dict:
    url = f"{base}/v2/models/{MODEL}/infer" if v2 else f"{base}/models/{MODEL}/invocations"
    form = "v2" if v2 else "split"
    result = {f"c{n}": asyncio.run(_load(url, bodies[form][0], auth, n, SECONDS)) for n in (1, 64)}
    rows = asyncio.run(_load(url, bodies[form][1000], auth, 2, SECONDS))
    result["batch_rows_per_s"] = rows["rps"] * 1000
    result["batch_errors"] = rows["errors"]
    return result


def _bodies(frame) -> dict:
    return {"split": json.dumps({"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}).encode(),
            "v2": json.dumps({"inputs": [{"name": c, "shape": [len(frame)], "datatype": "FP64", "data": frame[c].tolist()}
                                         for c in frame.columns]}).encode()}


@contextlib.contextmanager
def _api_with(stack: NativeStack, overrides: dict):
    """The model-api program replaced, on its port behind the same nginx, by one with other settings.
    (Restarting the whole supervised stack would lose the in-memory S3 stand-in's artifacts.)"""
    stack.supervisorctl("stop", "model-api", check=False)
    try:
        with extra_model_api(stack, overrides, f"{stack.settings.tracking_uri('127.0.0.1')}/v2/models/{MODEL}/ready"):
            yield
    finally:
        stack.supervisorctl("start", "model-api", check=False)


def run(stack: NativeStack) -> dict:
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
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        model.predict(rows)
        timings.append(time.perf_counter() - started)
    in_process_rows_per_s = 1000 / statistics.median(timings)

    results = {}
    for label, overrides in CONFIGS:
        with _api_with(stack, overrides):
            results[f"{label} V2"] = _measure(base, auth, bodies, True)
            results[f"{label} /invocations"] = _measure(base, auth, bodies, False)
    for workers in ("1", "2"):
        with _api_with(stack, {"MODEL_SERVER": "mlflow", "MODEL_API_WORKERS": workers}):
            results[f"mlflow w{workers} /invocations"] = _measure(base, auth, bodies, False)

    print(f"\n== model API through nginx, one-row requests ({SECONDS:.0f} s each) and 1,000-row batches ==")
    print(f"{'server':34} {'1 conn req/s':>12} {'p50 ms':>7} {'64 conn req/s':>13} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'batch rows/s':>12} {'errors':>6}")
    for label, r in results.items():
        print(f"{label:34} {r['c1']['rps']:12.0f} {r['c1']['p50_ms']:7.2f} {r['c64']['rps']:13.0f} "
              f"{r['c64']['p50_ms']:7.1f} {r['c64']['p99_ms']:7.1f} {r['batch_rows_per_s']:12,.0f} "
              f"{r['c1']['errors'] + r['c64']['errors'] + r['batch_errors']:6d}")
    print(f"in-process pyfunc.predict, 1,000 rows: {in_process_rows_per_s:,.0f} rows/s")
    lab_v2, lab_inv = results[f"{DEFAULT} V2"], results[f"{DEFAULT} /invocations"]
    mlflow_same = results["mlflow w1 /invocations"]  # the lab default has 1 worker
    print(f"\nlab defaults ({DEFAULT}) vs mlflow w1:")
    print(f"  64 conn throughput, V2: {lab_v2['c64']['rps'] / mlflow_same['c64']['rps']:.2f}x; /invocations: "
          f"{lab_inv['c64']['rps'] / mlflow_same['c64']['rps']:.2f}x (target: at least 2x)")
    print(f"  64 conn p99, V2: {lab_v2['c64']['p99_ms']:.0f} ms (target: under 100 ms)")
    print(f"  1 conn p50 ratio, V2: {lab_v2['c1']['p50_ms'] / mlflow_same['c1']['p50_ms']:.2f}; /invocations: "
          f"{lab_inv['c1']['p50_ms'] / mlflow_same['c1']['p50_ms']:.2f} (target: at most 1.2)")
    print(f"  1,000-row batches vs in-process: V2 {lab_v2['batch_rows_per_s'] / in_process_rows_per_s:.0%}, "
          f"/invocations {lab_inv['batch_rows_per_s'] / in_process_rows_per_s:.0%} (target: at least 50%)")
    return {"results": results, "in_process_rows_per_s": in_process_rows_per_s}
