"""Trace ingestion: spans per second that 8 applications send with MLflow's async trace logging,
through nginx (basic auth) and straight to the tracking server, and the tracking server's memory
after 10,000 traces.

Each client is a process of its own (bench/trace_client.py: `@mlflow.trace`-style spans, MLflow's
background export), started and importing before the clock starts. A round is timed from the
moment all 8 start logging to the moment the last one's export queue is empty; every trace is
then counted in PostgreSQL, so a dropped export would show. Rounds alternate between the two
paths so that machine noise hits both alike; the ratio is what to read.

Memory is the resident set of the tracking server's process group (its launcher, uvicorn and
its workers, the metrics server, the trace archival scheduler), summed (RSS; shared pages
counted in each process) and proportionally shared (PSS), before the first trace and once
10,000 have been stored. Native runner only (BENCH_RUNNER=native, the default).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from bench.stacks import mlflow_address
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.testing.stacks import Lab

CLIENTS = 8
ROUNDS = 3
TRACES_PER_CLIENT = 40  # a round: 8 x 40 traces
SPANS_PER_TRACE = 5
MEMORY_AFTER_TRACES = 10_000
REPO = Path(__file__).parent.parent  # where `python -m bench.trace_client` is found


def _client_env(url: str, lab: Lab, traces: int) -> dict[str, str]:
    env = {**os.environ, **lab.client_env(), "MLFLOW_TRACKING_URI": url}
    env["MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"] = "true"  # MLflow's default, said here
    # Its queue drops exports once full (1,000 by default). Each span is sent as it ends and each
    # trace once more: room for every export of the client.
    env["MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE"] = str(traces * (SPANS_PER_TRACE + 1) * 2)
    return env


def _round(url: str, lab: Lab, experiment_id: str, traces: int) -> tuple[float, list[float]]:
    """Seconds from the start signal until every client's spans were answered, and each client's own."""
    env = _client_env(url, lab, traces)
    argv = [sys.executable, "-m", "bench.trace_client", experiment_id, str(traces), str(SPANS_PER_TRACE)]
    clients = [
        subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(CLIENTS)
    ]
    for client in clients:
        assert client.stdout is not None and client.stdout.readline().strip() == "ready", "a trace client did not start"
    started = time.perf_counter()
    for client in clients:
        assert client.stdin is not None
        client.stdin.write("go\n")
        client.stdin.flush()
    own = []
    for client in clients:
        out, _ = client.communicate()
        if client.returncode != 0:
            raise SystemExit(f"a trace client failed (exit {client.returncode})")
        own.append(float(out.strip().splitlines()[-1]))
    return time.perf_counter() - started, own


def _stored(lab: Lab, experiment_id: str) -> tuple[int, int]:
    """Traces and spans PostgreSQL holds for an experiment."""
    s = lab.settings
    assert s is not None and lab.stack is not None
    host, port = lab.stack.address("postgres", "POSTGRES_PORT")
    login = {"user": s["POSTGRES_USER"], "password": s["POSTGRES_PASSWORD"], "dbname": s["POSTGRES_DB"]}
    with psycopg2.connect(host=host, port=port, **login) as db, db.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT t.request_id), count(sp.span_id) FROM trace_info t "
            "LEFT JOIN spans sp ON sp.trace_id = t.request_id WHERE t.experiment_id = %s",
            (int(experiment_id),),
        )
        traces, spans = cursor.fetchone()
    return traces, spans


def _memory_mib(lab: Lab) -> tuple[float, float, int] | None:
    """RSS and PSS (MiB) summed over the tracking server's process group, and its process count."""
    if not isinstance(lab.stack, NativeStack):
        return None
    group = os.getpgid(lab.stack.main_pid("mlflow"))
    rss = pss = count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != group:  # field 5, pgrp
                continue
            rollup = (entry / "smaps_rollup").read_text().splitlines()
        except (OSError, ValueError):
            continue  # gone meanwhile
        fields = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:]}
        rss, pss, count = rss + fields["Rss"], pss + fields["Pss"], count + 1
    return rss / 1024, pss / 1024, count


def _experiment(lab: Lab, name: str) -> str:
    session = lab.session()
    answer = session.post(f"{lab.url}/api/2.0/mlflow/experiments/create", json={"name": f"{name}-{os.getpid()}-{time.time_ns()}"})
    answer.raise_for_status()
    return answer.json()["experiment_id"]


def run(lab: Lab) -> dict[str, float]:
    host, port = mlflow_address(lab)
    paths = {"direct": f"http://{host}:{port}", "nginx": lab.url}
    idle = _memory_mib(lab)
    per_round = CLIENTS * TRACES_PER_CLIENT
    # Warm-up: the server's first traces pay for lazy imports and new database connections.
    for url in paths.values():
        _round(url, lab, _experiment(lab, "bench-traces-warmup"), TRACES_PER_CLIENT // 4)
    rates: dict[str, list[float]] = {"direct": [], "nginx": []}
    for _ in range(ROUNDS):
        for name, url in paths.items():
            experiment_id = _experiment(lab, f"bench-traces-{name}")
            seconds, _own = _round(url, lab, experiment_id, TRACES_PER_CLIENT)
            traces, spans = _stored(lab, experiment_id)
            if (traces, spans) != (per_round, per_round * SPANS_PER_TRACE):
                expected = f"{per_round} and {per_round * SPANS_PER_TRACE}"
                raise SystemExit(f"{name}: {traces} traces and {spans} spans stored of {expected} sent")
            rates[name].append(per_round * SPANS_PER_TRACE / seconds)
    direct, nginx = statistics.median(rates["direct"]), statistics.median(rates["nginx"])
    ratio = nginx / direct
    print(
        f"\n== trace ingestion ({CLIENTS} client processes, MLflow's async trace logging, {TRACES_PER_CLIENT} traces of "
        f"{SPANS_PER_TRACE} spans each a round, {ROUNDS} alternating rounds, median; every span counted in PostgreSQL) =="
    )
    for name, label in (("direct", "direct to MLflow"), ("nginx", "through nginx   ")):
        print(f"{label} : {statistics.median(rates[name]):7.1f} spans/s  (rounds: {', '.join(f'{r:.1f}' for r in rates[name])})")
    print(f"nginx/direct     : {ratio:.3f}  (target: at least 0.9)")

    figures = {"direct": direct, "nginx": nginx, "ratio": ratio}
    # Memory: up to MEMORY_AFTER_TRACES traces stored by this benchmark, the rest through nginx.
    sent = (2 * ROUNDS * per_round) + sum(CLIENTS * (TRACES_PER_CLIENT // 4) for _ in paths)
    experiment_id, more = _experiment(lab, "bench-traces-memory"), 0
    while sent + more < MEMORY_AFTER_TRACES:
        batch = min(250, -(-(MEMORY_AFTER_TRACES - sent - more) // CLIENTS))
        _round(lab.url, lab, experiment_id, batch)
        more += CLIENTS * batch
    stored, _spans = _stored(lab, experiment_id)
    if stored != more:
        raise SystemExit(f"memory: {stored} traces stored of {more} sent")
    sent += more
    after = _memory_mib(lab)
    if idle is None or after is None:
        print("tracking server memory: measured on the native runner only (BENCH_RUNNER=native)")
        return figures
    print(f"\n== tracking server memory (its process group: {after[2]} processes; RSS summed, PSS shared out) ==")
    print(f"before the first trace : RSS {idle[0]:7.0f} MiB  PSS {idle[1]:7.0f} MiB")
    print(f"after {sent:,} traces  : RSS {after[0]:7.0f} MiB  PSS {after[1]:7.0f} MiB")
    figures.update(rss_before=idle[0], rss_after=after[0], pss_before=idle[1], pss_after=after[1])
    return figures
