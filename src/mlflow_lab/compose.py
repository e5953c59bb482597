"""The Compose runner: the lab as containers on a Docker engine, driven through Compose v2.

compose.yaml is the declaration; this module only finds a suitable Compose, prepares what
the build needs (base images present, an optional host-built wheelhouse) and turns every
failure into one sentence, leaving nothing half-started behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path

from mlflow_lab import jobs
from mlflow_lab.errors import LabError
from mlflow_lab.settings import ENV_FILE, REPO_ROOT, Settings

# `depends_on.required` and `up --wait` arrived in Compose 2.20.
MIN_COMPOSE = (2, 20)
MIN_COMPOSE_TEXT = ".".join(map(str, MIN_COMPOSE))
INSTALL_COMPOSE = "Docker's compose plugin (package docker-compose-plugin) or Docker Desktop"
LOCK_FILE = REPO_ROOT / "requirements.lock"
WHEELHOUSE = REPO_ROOT / "services" / "mlflow" / "wheelhouse"  # mounted by the image build
# Jobs that have a Compose service (profile `jobs`); the others only write local files.
COMPOSE_JOBS = ("train", "promote", "score")


def _version(text: str) -> tuple[int, ...] | None:
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(part) for part in found.groups() if part is not None) if found else None


def compose_command(environ: Mapping[str, str] | None = None) -> tuple[list[str] | None, str]:
    """The Compose v2.20+ command (the `docker compose` plugin, else a standalone
    `docker-compose`) and its name and version; None and what was found instead when there is
    none (`environ`: the environment it runs in, e.g. DOCKER_CONFIG naming the plugins' folder)."""
    found: list[str] = []
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        result = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, env=environ)
        version = _version(result.stdout) if result.returncode == 0 else None
        if version is None:
            continue
        named = f"{' '.join(command)} {'.'.join(map(str, version))}"
        if version >= MIN_COMPOSE:
            return command, named
        found.append(named)
    return None, " and ".join(found) or "none"


def find_compose(environ: Mapping[str, str] | None = None) -> list[str]:
    """The Compose v2.20+ command, else a LabError saying what to install."""
    command, found = compose_command(environ)
    if command is None:
        raise LabError(
            f"the lab needs Docker Compose v{MIN_COMPOSE_TEXT} or newer, found {found}: "
            f"install {INSTALL_COMPOSE}, or run natively with LAB_RUNNER=native."
        )
    return command


def active_profiles(settings: Settings) -> set[str]:
    return set(settings.get("COMPOSE_PROFILES").replace(",", " ").split())


# Profiles whose services are third-party images only Compose runs (the native runner leaves
# them out): setting -> image of each.
COMPOSE_ONLY_PROFILES = {
    "monitoring": ("PROMETHEUS_IMAGE", "NGINX_EXPORTER_IMAGE", "POSTGRES_EXPORTER_IMAGE", "NODE_EXPORTER_IMAGE")
}


def base_images(settings: Settings) -> dict[str, str]:
    """The third-party images the active services build FROM or run: setting -> image."""
    names = ["PYTHON_IMAGE", "POSTGRES_IMAGE", "NGINX_IMAGE"]
    if "seaweedfs" in active_profiles(settings):
        names.append("SEAWEEDFS_IMAGE")
    if "minio" in active_profiles(settings):
        names += ["MINIO_BUILD_IMAGE", "MINIO_RUNTIME_IMAGE"]
    for profile in active_profiles(settings) & set(COMPOSE_ONLY_PROFILES):
        names += COMPOSE_ONLY_PROFILES[profile]
    return {name: settings[name] for name in names}


def image_present(image: str) -> bool:
    """The Docker engine has `image` (no registry is asked)."""
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def ensure_base_images(settings: Settings, only: tuple[str, ...] = ()) -> None:
    """Each base image (or `only` those settings) is in the engine or can be pulled; else say
    which setting to change."""
    for name, image in base_images(settings).items():
        if (only and name not in only) or image_present(image):
            continue
        pulled = subprocess.run(["docker", "pull", "--quiet", image], capture_output=True, text=True)
        if pulled.returncode != 0:
            reason = (pulled.stderr.strip().splitlines() or ["no reason given"])[-1]
            raise LabError(
                f"the base image {image} is not in the Docker engine and cannot be pulled ({reason}): "
                f"set {name} in .env to an image your registry mirror serves, or `docker load` it."
            )


def registry_serves(image: str, timeout: float, environ: Mapping[str, str] | None = None) -> bool:
    """A registry answers for `image` within `timeout` seconds (`docker manifest inspect`, with
    the client's registry settings and credentials from `environ`)."""
    try:
        found = subprocess.run(["docker", "manifest", "inspect", image], capture_output=True, timeout=timeout, env=environ)
    except subprocess.TimeoutExpired:
        return False
    return found.returncode == 0


def unavailable_base_image(settings: Settings, environ: Mapping[str, str] | None = None, within: float = 2.5) -> str | None:
    """The setting of the first base image that is neither in the Docker engine nor served by a
    registry, else None. Only absent images are asked for, all within `within` seconds: a
    registry that does not answer costs no more."""
    deadline = time.monotonic() + within
    for name, image in base_images(settings).items():
        if image_present(image):
            continue
        left = deadline - time.monotonic()
        if left <= 0 or not registry_serves(image, left, environ):
            return name
    return None


def fill_wheelhouse(settings: Settings) -> None:
    """With LAB_BUILD_OFFLINE=true: wheels for the Python image, built on the host from
    requirements.lock (plus pyproject.toml's build backend), for builders whose containers
    cannot reach a package index."""
    if settings["LAB_BUILD_OFFLINE"] != "true":
        return
    backend = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    stamp, wanted = WHEELHOUSE / ".lock-sha256", hashlib.sha256(LOCK_FILE.read_bytes() + str(backend).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print(
        f"building wheels from {LOCK_FILE.name} into {WHEELHOUSE.relative_to(REPO_ROOT)} (first time: a few minutes)",
        file=sys.stderr,
    )
    for requirements in (["-r", str(LOCK_FILE)], backend):
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(WHEELHOUSE), *requirements],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise LabError(f"building wheels into {WHEELHOUSE} failed: {result.stderr.strip().splitlines()[-1:]}")
    stamp.write_text(wanted)


def port_taken(address: str, port: int) -> bool:
    """Someone listens there (connections just closed in TIME_WAIT do not count, as for the engine)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


class ComposeStack:
    """`docker compose` for this checkout, with the lab's .env (COMPOSE_FILE may add files).
    `environ`: the environment Compose runs in (default: this process's)."""

    name = "compose"

    def __init__(self, settings: Settings, env_file: Path = ENV_FILE, environ: Mapping[str, str] | None = None):
        self.settings = settings
        self.env_file = env_file
        self.environ = dict(os.environ if environ is None else environ)

    def describe(self, reason: str) -> str:
        return f"runner: Compose ({reason})"

    def command(self, *args: str) -> list[str]:
        return [*find_compose(self.environ), "--env-file", str(self.env_file), *args]

    def run(self, *args: str, capture: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(self.command(*args), cwd=REPO_ROOT, capture_output=capture, text=True, env=self.environ)
        if check and result.returncode != 0:
            raise LabError(f"`docker compose {' '.join(args)}` failed (exit {result.returncode}).")
        return result

    def with_profiles(self, *extra: str) -> list[str]:
        """`--profile` options for COMPOSE_PROFILES plus `extra` (a --profile replaces the setting)."""
        return [arg for profile in sorted(active_profiles(self.settings) | set(extra)) for arg in ("--profile", profile)]

    def containers(self) -> list[str]:
        return self.run("ps", "--quiet", capture=True, check=False).stdout.split()

    def up(self) -> None:
        running_before = bool(self.containers())
        self._check_ports(running_before)
        ensure_base_images(self.settings)
        fill_wheelhouse(self.settings)
        result = self.run("up", "--build", "--detach", "--wait", check=False)
        if result.returncode != 0:
            failed = self.unhealthy()
            tails = "\n".join(f"==> {name} <==\n{self.log_tail(name, 20)}" for name in failed)
            if not running_before:
                self.down(check=False)  # nothing half-started
            which = f"{', '.join(failed)} failed" if failed else "see the output above"
            stopped = "; stopped what it had started" if not running_before else ""
            raise LabError(f"the stack did not come up ({which}){stopped}.\n{tails}".rstrip())

    def _check_ports(self, running_before: bool) -> None:
        if running_before:
            return  # our own nginx holds them
        address = self.settings["LAB_BIND_ADDRESS"]
        for name in ("LAB_HTTP_PORT", "LAB_GRPC_PORT"):
            if port_taken(address, self.settings.int(name)):
                raise LabError(f"port {self.settings[name]} on {address} is already taken: set {name} in .env to a free port.")

    def unhealthy(self) -> list[str]:
        """Services whose container is not running and healthy (one-shot init: not exited 0)."""
        listing = self.run(
            "ps", "--all", "--format", "{{.Service}}\t{{.State}}\t{{.Health}}\t{{.ExitCode}}", capture=True, check=False
        ).stdout
        failed = []
        for line in listing.splitlines():
            service, state, health, code = (line.split("\t") + ["", "", ""])[:4]
            ok = (state == "running" and health in ("", "healthy")) or (state == "exited" and code == "0")
            if not ok:
                failed.append(service)
        return failed

    def down(self, volumes: bool = False, check: bool = True) -> None:
        # Every profile, so that job containers and profile services stop too.
        self.run(
            "--profile", "*", "down", "--remove-orphans", *(["--volumes"] if volumes else []), capture=not check, check=check
        )

    def profiles(self) -> set[str]:
        return active_profiles(self.settings)

    def clean(self) -> None:
        self.down(volumes=True)

    def show_status(self) -> bool:
        self.run("ps", "--all")
        return not self.unhealthy() and bool(self.containers())

    def log_tail(self, service: str, lines: int = 30) -> str:
        return self.run("logs", "--no-color", "--tail", str(lines), service, capture=True, check=False).stdout.rstrip()

    def show_logs(self, service: str, lines: int) -> None:
        self.run("logs", "--tail", str(lines), *([service] if service else []))

    def run_job(self, name: str, args: list[str]) -> int:
        if name not in COMPOSE_JOBS:
            return jobs.run_here(self.settings, name, args)
        # The host user owns the files a job writes under ./data.
        return self.run(
            *self.with_profiles("jobs"), "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", name, *args, check=False
        ).returncode

    def postgres_command(self, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        # The server image's own client programs (pg_dump must not be older than the server),
        # connected by the container's own settings: no password on the host's command line.
        connect = 'PGUSER="$POSTGRES_USER" PGPASSWORD="$POSTGRES_PASSWORD" PGDATABASE="$POSTGRES_DB" exec "$@"'
        return self.command("exec", "-T", "postgres", "sh", "-c", connect, "sh", *argv), dict(self.environ)

    def run_init(self) -> None:
        result = self.run("run", "--rm", "--no-deps", "init", capture=True, check=False)
        if result.returncode != 0:
            raise LabError(f"init failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")

    # --- one service ----------------------------------------------------------------
    def restart(self, *services: str) -> None:
        self.run("restart", *services, capture=True)
        self.run("up", "--detach", "--wait", capture=True)  # until healthy again

    def stop_service(self, service: str) -> None:
        self.run("stop", service, capture=True)

    def start_service(self, service: str) -> None:
        self.run("up", "--detach", "--wait", capture=True)

    def _inspect(self, service: str, template: str) -> str:
        container = self.run("ps", "--all", "--quiet", service, capture=True).stdout.strip()
        if not container:
            return ""
        found = subprocess.run(["docker", "inspect", "--format", template, container], capture_output=True, text=True)
        return found.stdout.strip() if found.returncode == 0 else ""

    def main_pid(self, service: str) -> int:
        return int(self._inspect(service, "{{.State.Pid}}") or 0)

    def exec(self, service: str, argv: list[str]) -> subprocess.CompletedProcess:
        return self.run("exec", "-T", service, *argv, capture=True, check=False)

    def data_dir(self, service: str) -> Path:
        source = self._inspect(service, '{{range .Mounts}}{{if eq .Type "volume"}}{{.Source}}{{end}}{{end}}')
        if not source:
            raise LabError(f"service {service} has no running container with a named volume.")
        return Path(source)

    def address(self, service: str, setting: str) -> tuple[str, int]:
        # Inside the stack PostgreSQL always listens on 5432 (x-db-env); other ports are settings.
        internal = 5432 if setting == "POSTGRES_PORT" else self.settings.int(setting)
        out = self.run("port", service, str(internal), capture=True).stdout.strip()
        host, _, published = out.rpartition(":")
        return host, int(published)
