"""OS binaries the native runner needs, installed on demand where that is safe."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

from mlflow_lab.errors import LabError

# binary -> Debian package that ships it
BINARIES = {
    "pg_ctl": "postgresql",
    "nginx": "nginx-light",
    "envsubst": "gettext-base",
    "curl": "curl",  # compose.yaml's health checks of s3 and nginx, run on the host
}


def find(binary: str) -> str | None:
    """PATH first; Debian keeps PostgreSQL's server binaries in a versioned directory."""
    if path := shutil.which(binary):
        return path
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{binary}"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0
    )
    return candidates[-1] if candidates else None


def postgres_bin(name: str) -> str:
    """initdb/postgres/pg_isready from the same installation as pg_ctl."""
    pg_ctl = find("pg_ctl")
    sibling = os.path.join(os.path.dirname(pg_ctl), name) if pg_ctl else None
    if sibling and os.path.exists(sibling):
        return sibling
    if path := find(name):
        return path
    raise LabError(f"{name} is not installed (Debian package: postgresql).")


def ensure_installed(binaries: dict[str, str] = BINARIES, needed_by: str = "the native runner") -> None:
    missing = sorted({pkg for binary, pkg in binaries.items() if find(binary) is None})
    if not missing:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LabError(
            f"{needed_by} needs {', '.join(missing)}: run `sudo {' '.join(command)}` "
            "(or your system's equivalent), then try again."
        )
    print(f"{needed_by}: installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    # Debian starts the packaged nginx/postgresql services; the lab runs its own.
    # (Minimal systems and containers have no `service` command and started nothing.)
    if service_cmd := shutil.which("service"):
        for service in ("nginx", "postgresql"):
            if any(pkg.startswith(service) for pkg in missing):
                subprocess.run([service_cmd, service, "stop"], capture_output=True)


if __name__ == "__main__":  # `.ci/run` installs the same packages the native runner would
    try:
        ensure_installed()
    except LabError as exc:
        raise SystemExit(f"error: {exc}") from None
