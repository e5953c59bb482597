"""Settings for a throwaway lab: .env.example's values, new secrets, free loopback ports."""

from __future__ import annotations

import random
import socket

from mlflow_lab.errors import LabError
from mlflow_lab.native.runner import SEAWEEDFS_PORT_OFFSETS
from mlflow_lab.settings import ENV_EXAMPLE, PASSWORD_VARS, Settings, new_secret, parse_env_file

# Each port setting a lab listens on (besides S3_PORT, whose neighbours SeaweedFS takes too).
PORT_SETTINGS = (
    "POSTGRES_PORT",
    "MLFLOW_PORT",
    "LAB_HTTP_PORT",
    "LAB_GRPC_PORT",
    "NGINX_STATUS_PORT",
    "MODEL_API_PORT",
    "MODEL_API_GRPC_PORT",
    "MODEL_API_METRICS_PORT",
    "MLFLOW_METRICS_PORT",
)


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
    """A port for the S3 server whose neighbours SeaweedFS also takes (SEAWEEDFS_PORT_OFFSETS)."""
    offsets = [0, *SEAWEEDFS_PORT_OFFSETS.values()]
    for _ in range(200):
        port = random.randrange(20000, 30000)
        if all(_port_free(port + offset + grpc) for offset in offsets for grpc in (0, 10000)):
            return port
    raise LabError("found no free loopback ports for the S3 server between 20000 and 40000")


def fresh_settings(**overrides: str) -> Settings:
    """.env.example with new secrets, free ports on loopback, then `overrides`."""
    values = parse_env_file(ENV_EXAMPLE)
    values.update({name: new_secret() for name in PASSWORD_VARS})
    values.update(zip(PORT_SETTINGS, map(str, free_ports(len(PORT_SETTINGS))), strict=True))
    values.update(S3_PORT=str(free_s3_port()), LAB_BIND_ADDRESS="127.0.0.1", **overrides)
    return Settings(values)
