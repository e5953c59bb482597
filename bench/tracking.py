"""log_batch throughput of the tracking server: through nginx (with basic auth) vs direct.

Rounds alternate between the two paths so that machine noise hits both alike; the
ratio is what to read, the absolute figures are beside it.
"""

from __future__ import annotations

import statistics
import threading
import time

import requests

from bench.stacks import mlflow_address
from mlflow_lab.testing.stacks import Lab

CLIENTS = 8
ROUNDS = 4
SECONDS_PER_ROUND = 5.0
METRICS_PER_CALL = 100


def _throughput(url: str, auth, run_id: str) -> float:
    calls, stop = [0] * CLIENTS, time.monotonic() + SECONDS_PER_ROUND

    def client(slot: int) -> None:
        session = requests.Session()
        session.auth = auth
        step = 0
        while time.monotonic() < stop:
            step += 1
            metrics = [
                {"key": f"m{i}", "value": i * 0.5, "timestamp": 0, "step": step * 1000 + slot} for i in range(METRICS_PER_CALL)
            ]
            response = session.post(f"{url}/api/2.0/mlflow/runs/log-batch", json={"run_id": run_id, "metrics": metrics})
            response.raise_for_status()
            calls[slot] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(calls) / (time.monotonic() - started)


def run(lab: Lab) -> dict[str, float]:
    s = lab.settings
    proxied = (f"http://127.0.0.1:{s['LAB_HTTP_PORT']}", (s["LAB_USER"], s["LAB_PASSWORD"]))
    host, port = mlflow_address(lab)
    direct = (f"http://{host}:{port}", None)
    session = requests.Session()
    session.auth = proxied[1]
    experiment = session.post(f"{proxied[0]}/api/2.0/mlflow/experiments/create", json={"name": "bench-log-batch"}).json()
    run_id = session.post(f"{proxied[0]}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment["experiment_id"]}).json()[
        "run"
    ]["info"]["run_id"]

    # Warm-up: the server's first calls pay for lazy imports and new DB connections.
    _throughput(*direct, run_id)
    _throughput(*proxied, run_id)
    results = {"direct": [], "nginx": []}
    for _ in range(ROUNDS):
        results["direct"].append(_throughput(*direct, run_id))
        results["nginx"].append(_throughput(*proxied, run_id))
    direct_rate, nginx_rate = statistics.median(results["direct"]), statistics.median(results["nginx"])
    ratio = nginx_rate / direct_rate
    print(
        f"\n== tracking server log_batch ({METRICS_PER_CALL} metrics/call, {CLIENTS} clients, "
        f"{ROUNDS} alternating rounds of {SECONDS_PER_ROUND:.0f} s, median) =="
    )
    print(f"direct to MLflow : {direct_rate:7.1f} calls/s  (rounds: {', '.join(f'{r:.1f}' for r in results['direct'])})")
    print(f"through nginx    : {nginx_rate:7.1f} calls/s  (rounds: {', '.join(f'{r:.1f}' for r in results['nginx'])})")
    print(f"nginx/direct     : {ratio:.3f}  (proxy cost {100 * (1 - ratio):+.1f}%; target: at most 5%)")
    return {"direct": direct_rate, "nginx": nginx_rate, "ratio": ratio}
