"""The native runner: compose.yaml's services as host processes under supervisord.

What runs, with which environment, health check, start order and restart policy is read
from compose.yaml (`declaration`); this module only says what differs on the host (the
overlay below): service host names become 127.0.0.1, the stores and nginx run Debian's
binaries instead of their images, and their files live under one state directory.
Everything binds to loopback.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_lab import jobs
from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration, ospackages
from mlflow_lab.settings import REPO_ROOT, Settings

NGINX_DIR = REPO_ROOT / "nginx"
# PostgreSQL refuses to run as root; nginx should not either. Services that only need
# system binaries drop to this user when the runner is root. (The Python services keep
# the invoking user: the interpreter may live in a directory only that user can read.)
UNPRIVILEGED_USER = "nobody"
# ...who must reach their files: when the state directory sits in a private place (a 0700
# home or `mktemp -d`), theirs move here, one folder per state directory.
UNPRIVILEGED_ROOT = Path("/var/lib/mlflow-lab")
S3_MODES = ("seaweedfs", "minio")
# SeaweedFS's own servers (master, volume, filer) listen on S3_PORT + these offsets, and
# their gRPC ports 10000 above those (its convention); all on loopback.
SEAWEEDFS_PORT_OFFSETS = {"master": 1, "volume": 2, "filer": 3}


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


@dataclass(frozen=True)
class HostDifference:
    """What the overlay changes for one service: its command, variables, user, stop signal."""

    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    unprivileged: bool = False
    stopsignal: str = "TERM"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def reachable_by_others(path: Path) -> bool:
    """Every existing directory on the way to `path` lets other users through (o+x)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents) if p.exists())


class NativeStack:
    name = "native"

    def __init__(self, settings: Settings, state_dir: Path, compose_file: Path = declaration.COMPOSE_FILE):
        self.settings = settings
        self.compose_file = compose_file
        self.state = state_dir.resolve()
        self.logs = self.state / "logs"
        self.conf = self.state / "supervisord.conf"
        self.socket = self.state / "supervisor.sock"
        self.user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        # PostgreSQL's data, nginx's runtime files and copies of its entrypoint and template.
        self.private = (
            self.state
            if self.user is None or reachable_by_others(self.state)
            else UNPRIVILEGED_ROOT / hashlib.sha256(str(self.state).encode()).hexdigest()[:12]
        )
        self.nginx_conf = self.private / "nginx-conf"

    # --- what runs ------------------------------------------------------------
    @property
    def s3_mode(self) -> str:
        mode = self.settings["LAB_NATIVE_S3"]
        if mode not in S3_MODES:
            raise LabError(f"LAB_NATIVE_S3 must be {' or '.join(S3_MODES)}; got {mode!r}.")
        return mode

    def overlay(self) -> dict[str, HostDifference]:
        """What differs on the host, service by service; everything else is compose.yaml's."""
        s, state, private = self.settings, self.state, self.private
        bind = s["LAB_BIND_ADDRESS"]
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
            "model-api": HostDifference(
                env={"MODEL_API_BIND_HOST": "127.0.0.1", "MODEL_API_REPOSITORY": str(state / "model-api")}
            ),
            "nginx": HostDifference(
                argv=["/bin/sh", str(self.nginx_conf / "entrypoint.sh")],
                env={
                    "NGINX_LISTEN": f"{bind}:{s['LAB_HTTP_PORT']}",
                    "NGINX_GRPC_LISTEN": f"{bind}:{s['LAB_GRPC_PORT']}",
                    "NGINX_RESOLVER": "127.0.0.1",  # upstreams are IP addresses here: nothing to look up
                    "NGINX_RUNTIME_DIR": str(private / "nginx"),
                    "NGINX_TEMPLATES": str(self.nginx_conf),
                    "NGINX_ACCESS_LOG": str(private / "nginx" / "access.log"),
                    "NGINX_USERS_FILE": str(private / "nginx-users" / "users.htpasswd"),
                },
                unprivileged=True,
                stopsignal="QUIT",
            ),
        }

    def profiles(self) -> set[str]:
        """The S3 server natively is LAB_NATIVE_S3's (Compose: the profile in COMPOSE_PROFILES)."""
        return {self.s3_mode}

    def programs(self) -> dict[str, Program]:
        """compose.yaml's active services, each with the host's differences applied, in start order."""
        declared = declaration.services(self.settings.as_env(), self.profiles(), self.compose_file)
        overlay = self.overlay()
        hosts = "|".join(re.escape(name) for name in declared)
        # `mlflow:5001`, `http://mlflow:5001`, POSTGRES_HOST=postgres: every service is on loopback here.
        address = re.compile(rf"(^|//)({hosts})(?=:\d)")
        programs = {}
        for name in declaration.start_order(declared):
            svc, diff = declared[name], overlay.get(name, HostDifference())
            env = {key: address.sub(r"\g<1>127.0.0.1", value) for key, value in svc.environment.items()}
            env.update({key: "127.0.0.1" for key, value in env.items() if key.endswith("_HOST") and value in declared})
            if "POSTGRES_PORT" in env:  # the container's port is always 5432; natively it is the setting
                env["POSTGRES_PORT"] = self.settings["POSTGRES_PORT"]
            env.update(diff.env)
            argv = diff.argv or [sys.executable if svc.is_python else svc.command[0], *svc.command[1:]]
            if not argv:
                raise LabError(f"compose.yaml: service {name} has no command, and the native runner no overlay for it.")
            programs[name] = Program(
                name,
                argv,
                env,
                svc.healthcheck,
                svc.depends_on,
                svc.one_shot,
                self.user if diff.unprivileged else None,
                diff.stopsignal,
            )
        return programs

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
        """compose.yaml's health check, run on the host with the program's environment
        (`python` is this venv's); a program without one is healthy while it runs."""
        test = program.health
        if not test or test[0] == "NONE":
            return "RUNNING" in self.supervisorctl("status", program.name, check=False).stdout
        if test[0] == "CMD-SHELL":
            argv = ["/bin/sh", "-c", test[1]]
        else:
            argv = [sys.executable if test[1] == "python" else test[1], *test[2:]]
        try:
            return subprocess.run(argv, env=self.environment(program), capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

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
            if self.user:
                owner = pwd.getpwnam(self.user)
                os.chown(self.private / sub, owner.pw_uid, owner.pw_gid)
        self._initdb()

    def _initdb(self) -> None:
        data = self.private / "postgres"
        if (data / "PG_VERSION").exists():
            return
        data.chmod(0o700)
        pwfile = self.private / "pgpass.tmp"
        pwfile.write_text(self.settings["POSTGRES_PASSWORD"] + "\n")
        if self.user:
            owner = pwd.getpwnam(self.user)
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        try:
            subprocess.run(
                [
                    ospackages.postgres_bin("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.settings["POSTGRES_USER"],
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                check=True,
                capture_output=True,
                text=True,
                user=self.user,
                cwd=self.private,
            )
        except subprocess.CalledProcessError as exc:
            raise LabError(f"initdb failed: {exc.stderr.strip()}") from None
        finally:
            pwfile.unlink()

    def _write_env_file(self, program: Program) -> Path:
        """The program's variables as a shell file only its user can read: secrets stay off
        command lines and out of supervisord.conf, and no value needs supervisord's escaping."""
        path = self.private / "env" / f"{program.name}.env"
        path.parent.mkdir(mode=0o755, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.touch(mode=0o600)
        partial.chmod(0o600)
        partial.write_text("".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(program.env.items())))
        if program.user:
            owner = pwd.getpwnam(program.user)
            os.chown(partial, owner.pw_uid, owner.pw_gid)
        partial.replace(path)
        return path

    def _write_supervisor_conf(self, programs: dict[str, Program]) -> bool:
        """Write supervisord.conf and the programs' env files; True when anything changed."""
        env_files = self.private / "env"
        before = {path: path.read_text() for path in env_files.glob("*.env")} if env_files.exists() else {}
        lines = [
            "; generated by the mlflow-lab native runner from compose.yaml; edit that, not this file",
            "[unix_http_server]",
            f"file={self.socket}",
            "chmod=0700",
            "",
            "[supervisord]",
            f"logfile={self.logs / 'supervisord.log'}",
            f"pidfile={self.state / 'supervisord.pid'}",
            f"directory={self.state}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{self.socket}",
            "",
        ]
        for program in programs.values():
            if program.one_shot:
                continue  # run to completion by `up`, not supervised
            env_file = self._write_env_file(program)
            group_file = self._group_file(program)
            # supervisord starts each program as a process group of its own. A program killed
            # with SIGKILL (the OOM killer) can leave its children behind (`mlflow server`'s
            # uvicorn keeps the port), and the restarted program could not bind: so each start
            # first kills what is left of the previous start's group (its leader is gone; Linux
            # reuses no ID of a living group), then records its own.
            prelude = (
                f'group={shlex.quote(str(group_file))}; old=$(cat "$group" 2>/dev/null || true); '
                'if [ -n "$old" ] && [ ! -e "/proc/$old" ]; then kill -KILL "-$old" 2>/dev/null || true; fi; '
                'echo $$ > "$group"; '
            )
            command = shlex.join(["/bin/sh", "-c", f'{prelude}. {shlex.quote(str(env_file))} && exec "$0" "$@"', *program.argv])
            lines += [
                f"[program:{program.name}]",
                f"command={command.replace('%', '%%')}",
                "autostart=false",  # `up` starts them in compose.yaml's order
                "autorestart=true",
                "startsecs=2",
                f"stopsignal={program.stopsignal}",
                "stopwaitsecs=30",
                "stopasgroup=true",
                "killasgroup=true",
                "redirect_stderr=true",
                f"stdout_logfile={self.logs / program.name}.log",
                "stdout_logfile_maxbytes=20MB",
                *([f"user={program.user}", f"directory={self.private}"] if program.user else []),
                "",
            ]
        text = "\n".join(lines)
        after = {path: path.read_text() for path in env_files.glob("*.env")}
        changed = not self.conf.exists() or self.conf.read_text() != text or before != after
        self.conf.write_text(text)
        return changed

    def _group_file(self, program: Program) -> Path:
        """Where the program records its process group; only it (and root) may write there."""
        folder = self.private / "groups"
        folder.mkdir(mode=0o755, exist_ok=True)
        path = folder / program.name
        path.touch(mode=0o600, exist_ok=True)
        if program.user:
            owner = pwd.getpwnam(program.user)
            os.chown(path, owner.pw_uid, owner.pw_gid)
        return path

    def supervisorctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        exe = Path(sys.executable).parent / "supervisorctl"
        return subprocess.run([str(exe), "-c", str(self.conf), *args], capture_output=True, text=True, check=check)

    def running(self) -> bool:
        return self.socket.exists() and self.supervisorctl("pid", check=False).returncode == 0

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
            exe = Path(sys.executable).parent / "supervisord"
            subprocess.run([str(exe), "-c", str(self.conf)], check=True)
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
        if not self.running():
            return
        supervisord = int(self.supervisorctl("pid", check=False).stdout.strip() or 0)
        self.supervisorctl("shutdown", check=False)
        # Until supervisord itself has exited, not only its socket: on exit it unlinks the
        # socket path again, which would remove the socket of a supervisord started next.
        deadline = time.monotonic() + 60
        while (self.socket.exists() or _alive(supervisord)) and time.monotonic() < deadline:
            time.sleep(0.2)

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
        return f"runner: native ({reason}); state in {self.state}\nartifacts: {self.describe_s3()}"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def describe_s3(self) -> str:
        server = {"seaweedfs": "SeaweedFS", "minio": "MinIO"}[self.s3_mode]
        return f"{server} at 127.0.0.1:{self.settings['S3_PORT']} (bucket {self.settings['S3_BUCKET']})"
