"""The tracking server's Prometheus metrics on a port of their own (MLFLOW_METRICS_PORT).

`mlflow server --expose-prometheus DIR` has every worker write its request counters and
latencies (prometheus_flask_exporter, multiprocess mode) into DIR and answers /metrics on
MLFLOW_PORT, where MLflow's auth app lets admins only through: Prometheus would need the
admin's password. This process reads the same DIR and serves it, unauthenticated, on a port
that only the stack network (Compose) or loopback (native) reaches. Started by
mlflow_lab.stack.tracking_server beside the server; it ends when the server does.

    python -m mlflow_lab.stack.tracking_metrics DIR HOST PORT
"""

from __future__ import annotations

import os
import sys
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def serve(directory: str, host: str, port: int) -> None:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    start_http_server(port, addr=host, registry=registry)


def main() -> None:
    directory, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    server = os.getppid()  # the launcher, which became `mlflow server` by exec
    serve(directory, host, port)
    while os.getppid() == server:  # reparented: the server is gone, and so are its metrics
        time.sleep(2)


if __name__ == "__main__":
    main()
