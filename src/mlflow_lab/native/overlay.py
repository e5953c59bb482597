"""The native overlay: what differs on the host, service by service; everything else is compose.yaml's.

The stores and nginx run Debian's binaries (and the `weed` of this Python environment) instead
of their images, with their files under the state directory; the Python services only bind to
loopback. Everything listens on 127.0.0.1 except nginx, on LAB_BIND_ADDRESS as under Compose.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_lab.native import ospackages
from mlflow_lab.settings import Settings

# SeaweedFS's own servers (master, volume, filer) listen on S3_PORT + these offsets, and
# their gRPC ports 10000 above those (its convention); all on loopback.
SEAWEEDFS_PORT_OFFSETS = {"master": 1, "volume": 2, "filer": 3}


@dataclass(frozen=True)
class HostDifference:
    """What the overlay changes for one service: its command, variables, user, stop signal."""

    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    unprivileged: bool = False
    stopsignal: str = "TERM"


def host_overlay(settings: Settings, state: Path, private: Path, nginx_conf: Path) -> dict[str, HostDifference]:
    """The differences, for a lab keeping its files in `state` (the unprivileged services' in
    `private`) whose nginx reads its entrypoint and templates from `nginx_conf`."""
    s = settings
    s3_port = s["S3_PORT"]
    seaweed_ports = [
        f"-{name}.port{grpc}={int(s3_port) + offset + (10000 if grpc else 0)}"
        for name, offset in SEAWEEDFS_PORT_OFFSETS.items()
        for grpc in ("", ".grpc")
    ]
    return {
        "postgres": HostDifference(
            argv=[
                ospackages.postgres_bin("postgres"),
                "-D",
                str(private / "postgres"),
                "-p",
                s["POSTGRES_PORT"],
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ],
            # compose.yaml's pg_isready then reaches it over TCP (there is no socket).
            env={"PGHOST": "127.0.0.1", "PGPORT": s["POSTGRES_PORT"]},
            unprivileged=True,
            stopsignal="INT",  # SIGINT: PostgreSQL's fast shutdown
        ),
        "s3": HostDifference(
            argv=[
                str(Path(sys.executable).parent / "weed"),
                "-logtostderr=true",
                "server",
                f"-dir={state / 's3'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                *seaweed_ports,
                "-volume.max=0",
                "-master.volumeSizeLimitMB=1024",
                "-s3",
                f"-s3.port={s3_port}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ]
        ),
        "minio": HostDifference(
            argv=[
                "minio",
                "server",
                str(state / "s3"),
                "--address",
                f"127.0.0.1:{s3_port}",
                "--console-address",
                "127.0.0.1:0",
            ]
        ),
        "mlflow": HostDifference(env={"MLFLOW_BIND_HOST": "127.0.0.1"}),
        "model-api": HostDifference(env={"MODEL_API_BIND_HOST": "127.0.0.1", "MODEL_API_REPOSITORY": str(state / "model-api")}),
        "nginx": HostDifference(
            argv=["/bin/sh", str(nginx_conf / "entrypoint.sh")],
            env={
                "NGINX_LISTEN": f"{s['LAB_BIND_ADDRESS']}:{s['LAB_HTTP_PORT']}",
                "NGINX_GRPC_LISTEN": f"{s['LAB_BIND_ADDRESS']}:{s['LAB_GRPC_PORT']}",
                "NGINX_RESOLVER": "127.0.0.1",  # upstreams are IP addresses here: nothing to look up
                "NGINX_STATUS_LISTEN": f"127.0.0.1:{s['NGINX_STATUS_PORT']}",
                # No Prometheus natively (profile monitoring is Compose's): a socket that never
                # exists, so /prometheus/ answers 503 at once.
                "PROMETHEUS_UPSTREAM": f"unix:{private / 'nginx' / 'no-prometheus.sock'}",
                "NGINX_RUNTIME_DIR": str(private / "nginx"),
                "NGINX_TEMPLATES": str(nginx_conf),
                "NGINX_ACCESS_LOG": str(private / "nginx" / "access.log"),
                "NGINX_USERS_FILE": str(private / "nginx-users" / "users.htpasswd"),
            },
            unprivileged=True,
            stopsignal="QUIT",
        ),
    }
