"""A throwaway native stack on free loopback ports, for the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mlflow_lab.errors import LabError
from mlflow_lab.native.runner import SEAWEEDFS_PORT_OFFSETS, NativeStack
from mlflow_lab.settings import ENV_EXAMPLE, Settings, new_secret, parse_env_file


def http_ok(url: str) -> bool:
    """True once `url` answers 200 (connection refused and timeouts are just 'not yet')."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_s3_port() -> int:
    """A port for the S3 server whose neighbours SeaweedFS also takes (runner.SEAWEEDFS_PORT_OFFSETS)."""
    offsets = [0, *SEAWEEDFS_PORT_OFFSETS.values()]
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if all(_port_free(port + offset + grpc) for offset in offsets for grpc in (0, 10000)):
            return port
    raise LabError("found no free loopback ports for the S3 server between 20000 and 40000")


def fresh_settings() -> Settings:
    """.env.example with new secrets and free ports."""
    values = parse_env_file(ENV_EXAMPLE)
    pg, mlflow, http, grpc, status, api, api_grpc, api_metrics = free_ports(8)
    s3 = free_s3_port()
    values.update(
        LAB_PASSWORD=new_secret(),
        POSTGRES_PASSWORD=new_secret(),
        S3_SECRET_ACCESS_KEY=new_secret(),
        POSTGRES_PORT=str(pg),
        S3_PORT=str(s3),
        MLFLOW_PORT=str(mlflow),
        LAB_HTTP_PORT=str(http),
        NGINX_STATUS_PORT=str(status),
        LAB_BIND_ADDRESS="127.0.0.1",
        LAB_GRPC_PORT=str(grpc),
        MODEL_API_PORT=str(api),
        MODEL_API_GRPC_PORT=str(api_grpc),
        MODEL_API_METRICS_PORT=str(api_metrics),
    )
    return Settings(values)


def new_state_dir() -> Path:
    # Not a per-user private temp dir: the services run unprivileged when we are root.
    state = Path(tempfile.mkdtemp(prefix="mlflow-lab-"))
    state.chmod(0o755)
    return state


@contextlib.contextmanager
def extra_model_api(stack: NativeStack, overrides: dict[str, str], ready_url: str, timeout: float = 180):
    """One more model-api process with some settings changed (for comparisons in tests and
    benchmarks): started, waited for until `ready_url` answers 200, stopped with its workers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow_lab.stack.model_api"],
        env={**stack.environment(stack.programs()["model-api"]), **overrides},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while not http_ok(ready_url):
            if time.monotonic() > deadline or process.poll() is not None:
                raise LabError(f"the model API with {overrides} did not become ready at {ready_url}")
            time.sleep(0.5)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def ephemeral_stack(keep_state=lambda: False):
    """Start a native stack, yield it, stop it and delete its state.

    The state (logs included) is kept when something raised, or when keep_state() says so
    at the end (the test session uses it to keep the logs of failed tests).
    """
    stack = NativeStack(fresh_settings(), new_state_dir())
    failed = True
    try:
        stack.up()
        yield stack
        failed = False
    finally:
        stack.down()
        if not (failed or keep_state()):
            stack.remove_state()
