"""A service of compose.yaml as a host process: compose.yaml's declaration with the overlay's
differences applied and every service's address on loopback."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow_lab.errors import LabError
from mlflow_lab.native.declaration import DeclaredService, start_order
from mlflow_lab.native.hostnames import on_loopback
from mlflow_lab.native.overlay import HostDifference


@dataclass(frozen=True)
class Program:
    """One service of compose.yaml as a host process."""

    name: str
    argv: list[str]
    env: dict[str, str]  # the service's own variables, on top of the runner's environment
    health: list[str] | None  # Compose's healthcheck test, run on the host
    depends_on: dict[str, str]
    one_shot: bool
    user: str | None = None
    stopsignal: str = "TERM"


def derive(
    declared: Mapping[str, DeclaredService], overlay: Mapping[str, HostDifference], postgres_port: str, user: str | None
) -> dict[str, Program]:
    """Each declared service as a program, in start order; `user` runs those the overlay makes unprivileged."""
    programs = {}
    for name in start_order(declared):
        svc, diff = declared[name], overlay.get(name, HostDifference())
        env = on_loopback(svc.environment, set(declared))
        if "POSTGRES_PORT" in env:  # the container's port is always 5432; natively it is the setting
            env["POSTGRES_PORT"] = postgres_port
        env.update(diff.env)
        command = [sys.executable if svc.is_python else svc.command[0], *svc.command[1:]] if svc.command else []
        argv = diff.argv or command
        if not argv:
            raise LabError(f"compose.yaml: service {name} has no command, and the native runner no overlay for it.")
        programs[name] = Program(
            name,
            argv,
            env,
            svc.healthcheck,
            svc.depends_on,
            svc.one_shot,
            user if diff.unprivileged else None,
            diff.stopsignal,
        )
    return programs
