"""The native runner: compose.yaml's services as host processes under supervisord.

What runs, with which environment, health check, start order and restart policy is read
from compose.yaml (`declaration`); the overlay says what differs on the host; NativeStack
puts them together: the programs (`program`, addresses on loopback by `hostnames`), PostgreSQL's
cluster (`postgres_cluster`), supervisord (`supervisor`), the health checks (`health`) and the
unprivileged user of the system binaries' services (`privileges`), with all state in one directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mlflow_lab import jobs
from mlflow_lab.compose import COMPOSE_ONLY_PROFILES, active_profiles
from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration, health, ospackages, s3_server
from mlflow_lab.native.overlay import SEAWEEDFS_PORT_OFFSETS, HostDifference, host_overlay
from mlflow_lab.native.postgres_cluster import ensure_cluster
from mlflow_lab.native.privileges import hand_over, private_dir, unprivileged_user
from mlflow_lab.native.program import Program, derive
from mlflow_lab.native.supervisor import Supervisor
from mlflow_lab.settings import REPO_ROOT, Settings

# Read here by the tests' port allocation (mlflow_lab.testing.ports).
__all__ = ["SEAWEEDFS_PORT_OFFSETS", "NativeStack", "Program"]

NGINX_DIR = REPO_ROOT / "nginx"


class NativeStack:
    name = "native"

    def __init__(self, settings: Settings, state_dir: Path, compose_file: Path = declaration.COMPOSE_FILE):
        self.settings = settings
        self.compose_file = compose_file
        self.state = state_dir.resolve()
        self.user = unprivileged_user()
        # PostgreSQL's data, nginx's runtime files and copies of its entrypoint and template.
        self.private = private_dir(self.state, self.user)
        self.nginx_conf = self.private / "nginx-conf"
        self.supervisor = Supervisor(self.state, self.private)
        self.logs, self.conf, self.socket = self.supervisor.logs, self.supervisor.conf, self.supervisor.socket

    # --- what runs ------------------------------------------------------------
    def overlay(self) -> dict[str, HostDifference]:
        """What differs on the host, service by service; everything else is compose.yaml's."""
        return host_overlay(self.settings, self.state, self.private, self.nginx_conf)

    def profiles(self) -> set[str]:
        """COMPOSE_PROFILES, as under Compose: the S3 server it names runs here too (one at most);
        the Compose-only ones (monitoring) do not."""
        s3_server.s3_profile(self.settings)
        return active_profiles(self.settings) - set(COMPOSE_ONLY_PROFILES)

    def programs(self) -> dict[str, Program]:
        """compose.yaml's active services, each with the host's differences applied, in start order."""
        declared = declaration.services(self.settings.as_env(), self.profiles(), self.compose_file)
        return derive(declared, self.overlay(), self.settings["POSTGRES_PORT"], self.user)

    def environment(self, program: Program) -> dict[str, str]:
        """The whole environment a program starts with."""
        return {
            **os.environ,
            "HOME": str(self.state / "home"),
            # The venv's tools (mlflow, weed) even when it is not activated, and PostgreSQL's
            # client tools (compose.yaml's health check runs pg_isready).
            "PATH": os.pathsep.join(
                [
                    str(Path(sys.executable).parent),
                    os.path.dirname(ospackages.postgres_bin("pg_isready")),
                    os.environ.get("PATH", ""),
                ]
            ),
            "PYTHONUNBUFFERED": "1",
            **program.env,
        }

    def healthy(self, program: Program) -> bool:
        """compose.yaml's health check, run on the host with the program's environment; a
        program without one is healthy while it runs."""
        test = program.health
        if not test or test[0] == "NONE":
            return "RUNNING" in self.supervisorctl("status", program.name, check=False).stdout
        return health.passes(test, self.environment(program))

    # --- lifecycle ------------------------------------------------------------
    def prepare(self) -> None:
        ospackages.ensure_installed()
        for sub in ("logs", "home", "s3"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)
        self.private.mkdir(mode=0o755, parents=True, exist_ok=True)
        # The unprivileged nginx reads these copies (refreshed on every `up`), not the checkout.
        shutil.copytree(NGINX_DIR, self.nginx_conf, dirs_exist_ok=True)
        for sub in ("nginx", "nginx-users", "postgres"):
            (self.private / sub).mkdir(exist_ok=True)
            hand_over(self.private / sub, self.user)
        ensure_cluster(self.private / "postgres", self.settings, self.user)

    def _write_supervisor_conf(self, programs: dict[str, Program]) -> bool:
        """Write supervisord.conf and the programs' env files; True when anything changed."""
        return self.supervisor.write_conf(programs)

    def supervisorctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.supervisor.ctl(*args, check=check)

    def running(self) -> bool:
        return self.supervisor.running()

    def wait_ready(self, names: list[str], timeout: float = 120) -> None:
        programs = self.programs()
        pending = {name: programs[name] for name in names}
        deadline = time.monotonic() + timeout
        while pending:
            pending = {name: program for name, program in pending.items() if not self.healthy(program)}
            for name in pending:
                if "FATAL" in self.supervisorctl("status", name, check=False).stdout:
                    raise LabError(f"{name} failed to start; see {self.logs / name}.log:\n{self.log_tail(name)}")
            if pending and time.monotonic() > deadline:
                name = next(iter(pending))
                raise LabError(
                    f"{name} did not become ready within {timeout:.0f}s; see {self.logs / name}.log:\n{self.log_tail(name)}"
                )
            time.sleep(0.3)

    def _run_once(self, program: Program) -> None:
        """A one-shot service (compose.yaml's restart: "no", e.g. init): run to completion."""
        result = subprocess.run(program.argv, env=self.environment(program), capture_output=True, text=True)
        (self.logs / f"{program.name}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise LabError(f"{program.name} failed: {(result.stderr or result.stdout).strip()}")

    def up(self) -> None:
        self.prepare()
        programs = self.programs()
        if self._write_supervisor_conf(programs) and self.running():
            self.down()  # settings changed: restart everything with the new ones
        if not self.running():
            self.supervisor.start()
        # compose.yaml's order: each service once its dependencies meet their conditions.
        for name, program in programs.items():
            self.wait_ready([dep for dep, condition in program.depends_on.items() if condition == "service_healthy"])
            if program.one_shot:
                self._run_once(program)
            else:
                self.supervisorctl("start", name, check=False)
        self.wait_ready([name for name, program in programs.items() if not program.one_shot])

    def restart(self, *names: str) -> None:
        self.supervisorctl("restart", *names, check=False)
        self.wait_ready(list(names))

    def stop_service(self, service: str) -> None:
        self.supervisorctl("stop", service)

    def start_service(self, service: str) -> None:
        self.supervisorctl("start", service)
        self.wait_ready([service])

    def main_pid(self, service: str) -> int:
        answer = self.supervisorctl("pid", service, check=False).stdout.strip() if self.running() else ""
        return int(answer) if answer.isdigit() else 0

    def exec(self, service: str, argv: list[str]) -> subprocess.CompletedProcess:
        program = self.programs()[service]
        return subprocess.run(argv, env=self.environment(program), user=program.user, capture_output=True, text=True)

    def data_dir(self, service: str) -> Path:
        folders = {
            "postgres": self.private / "postgres",
            "s3": self.state / "s3",
            "minio": self.state / "s3",
            "nginx": self.private / "nginx-users",
            "model-api": self.state / "model-api",
        }
        if service not in folders:
            raise LabError(f"service {service} keeps no data natively.")
        return folders[service]

    def address(self, service: str, setting: str) -> tuple[str, int]:
        return "127.0.0.1", self.settings.int(setting)  # every native service listens on loopback

    def down(self) -> None:
        self.supervisor.shutdown()

    def remove_state(self) -> None:
        """Delete everything this stack keeps (stop it first)."""
        shutil.rmtree(self.state, ignore_errors=True)
        if self.private != self.state:
            shutil.rmtree(self.private, ignore_errors=True)

    def status(self) -> dict[str, str]:
        supervised = [program for program in self.programs().values() if not program.one_shot]
        if not self.running():
            return {program.name: "stopped" for program in supervised}
        return {program.name: "healthy" if self.healthy(program) else "not ready" for program in supervised}

    def clean(self) -> None:
        self.down()
        self.remove_state()

    def show_status(self) -> bool:
        states = self.status()
        for name, state in states.items():
            print(f"{name:10} {state}")
        return all(state == "healthy" for state in states.values())

    def show_logs(self, service: str, lines: int) -> None:
        for name in [service] if service else list(self.programs()):
            print(f"==> {name} <==\n{self.log_tail(name, lines)}\n")

    def run_job(self, name: str, args: list[str]) -> int:
        return jobs.run_here(self.settings, name, args)

    def postgres_command(self, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        s = self.settings
        connect = {"PGUSER": s["POSTGRES_USER"], "PGPASSWORD": s["POSTGRES_PASSWORD"], "PGDATABASE": s["POSTGRES_DB"]}
        postgres = self.environment(self.programs()["postgres"])  # PGHOST and PGPORT of the lab's server
        return [ospackages.postgres_bin(argv[0]), *argv[1:]], {**postgres, **connect}

    def run_init(self) -> None:
        self._run_once(self.programs()["init"])

    def describe(self, reason: str) -> str:
        return f"runner: native ({reason}); state in {self.state}\nartifacts: {s3_server.describe(self.settings)}"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
