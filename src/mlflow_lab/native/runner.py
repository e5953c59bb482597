"""The native runner: the same services as compose.yaml, as host processes under supervisord.

Order mirrors the Compose `depends_on` graph:
postgres, s3 (healthy) -> init (completed) -> mlflow (healthy) -> model-api (live) -> nginx.
All state lives under one directory; everything binds to loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlflow_lab.errors import LabError
from mlflow_lab.native import ospackages
from mlflow_lab.settings import REPO_ROOT, Settings

NGINX_DIR = REPO_ROOT / "services" / "nginx"
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
class Service:
    """One supervised program and how to tell it is ready."""

    name: str
    command: str
    ready: callable
    user: str | None = None
    stopsignal: str = "TERM"


def reachable_by_others(path: Path) -> bool:
    """Every existing directory on the way to `path` lets other users through (o+x)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents) if p.exists())


def http_ok(url: str) -> bool:
    """True once `url` answers 200 (connection refused and timeouts are just 'not yet')."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


class NativeStack:
    def __init__(self, settings: Settings, state_dir: Path):
        self.settings = settings
        self.state = state_dir.resolve()
        self.logs = self.state / "logs"
        self.conf = self.state / "supervisord.conf"
        self.socket = self.state / "supervisor.sock"
        self.user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
        # PostgreSQL's data, nginx's runtime files and copies of its entrypoint and template.
        self.private = self.state if self.user is None or reachable_by_others(self.state) else \
            UNPRIVILEGED_ROOT / hashlib.sha256(str(self.state).encode()).hexdigest()[:12]
        self.nginx_conf = self.private / "nginx-conf"

    # --- what runs ------------------------------------------------------------
    @property
    def s3_mode(self) -> str:
        mode = self.settings.get("LAB_NATIVE_S3", "seaweedfs")
        if mode not in S3_MODES:
            raise LabError(f"LAB_NATIVE_S3 must be {' or '.join(S3_MODES)}; got {mode!r}.")
        return mode

    def port(self, name: str) -> int:
        return self.settings.int(name)

    def service_env(self) -> dict[str, str]:
        """The settings as the services see them in this runner (loopback addresses)."""
        s, state = self.settings, self.state
        env = {**os.environ, **s.as_env()}
        env.update(
            HOME=str(state / "home"),
            # The venv's tools (mlflow, weed) even when it is not activated.
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            POSTGRES_HOST="127.0.0.1",
            MLFLOW_BIND_HOST="127.0.0.1",
            MLFLOW_UPSTREAM=f"127.0.0.1:{s['MLFLOW_PORT']}",
            NGINX_LISTEN=f"{s.get('LAB_BIND_ADDRESS', '127.0.0.1')}:{s['LAB_HTTP_PORT']}",
            NGINX_STATUS_PORT=s.get("NGINX_STATUS_PORT", "8081"),
            NGINX_RUNTIME_DIR=str(self.private / "nginx"),
            NGINX_TEMPLATE=str(self.nginx_conf / "nginx.conf.template"),
            NGINX_ACCESS_LOG=str(self.private / "nginx" / "access.log"),
            S3_ENDPOINT_URL=f"http://127.0.0.1:{s['S3_PORT']}",
            MODEL_API_TRACKING_URI=f"http://127.0.0.1:{s['MLFLOW_PORT']}",
            MODEL_API_BIND_HOST="127.0.0.1",
            MODEL_API_REPOSITORY=str(state / "model-api"),
            MODEL_API_UPSTREAM=f"127.0.0.1:{s['MODEL_API_PORT']}",
            MODEL_API_GRPC_UPSTREAM=f"127.0.0.1:{s['MODEL_API_GRPC_PORT']}",
            NGINX_GRPC_LISTEN=f"{s.get('LAB_BIND_ADDRESS', '127.0.0.1')}:{s['LAB_GRPC_PORT']}",
            PYTHONUNBUFFERED="1",
        )
        # The S3 server's admin identity: MinIO's names, and AWS_* for SeaweedFS's gateway.
        env.update(MINIO_ROOT_USER=s["S3_ACCESS_KEY_ID"], MINIO_ROOT_PASSWORD=s["S3_SECRET_ACCESS_KEY"],
                   AWS_ACCESS_KEY_ID=s["S3_ACCESS_KEY_ID"], AWS_SECRET_ACCESS_KEY=s["S3_SECRET_ACCESS_KEY"])
        return env

    def services(self) -> list[Service]:
        s, state, py = self.settings, self.state, sys.executable
        pg_port, s3_port = self.port("POSTGRES_PORT"), self.port("S3_PORT")
        mlflow_port, status_port = self.port("MLFLOW_PORT"), int(s.get("NGINX_STATUS_PORT", "8081"))
        api_port = self.port("MODEL_API_PORT")
        pg_isready = ospackages.postgres_bin("pg_isready")
        services = [
            Service(
                "postgres",
                f"{ospackages.postgres_bin('postgres')} -D {self.private / 'postgres'} -p {pg_port} "
                f"-c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
                lambda: subprocess.run([pg_isready, "-q", "-h", "127.0.0.1", "-p", str(pg_port)]).returncode == 0,
                user=self.user, stopsignal="INT",  # SIGINT = PostgreSQL's fast shutdown
            ),
        ]
        if self.s3_mode == "minio":
            services.append(Service(
                "s3", f"minio server {state / 's3'} --address 127.0.0.1:{s3_port} --console-address 127.0.0.1:0",
                lambda: http_ok(f"http://127.0.0.1:{s3_port}/minio/health/live")))
        else:
            ports = " ".join(f"-{name}.port={s3_port + offset} -{name}.port.grpc={s3_port + offset + 10000}"
                             for name, offset in SEAWEEDFS_PORT_OFFSETS.items())
            services.append(Service(
                "s3", f"{Path(py).parent / 'weed'} -logtostderr=true server -dir={state / 's3'} -ip=127.0.0.1 "
                      f"-ip.bind=127.0.0.1 {ports} -volume.max=0 -master.volumeSizeLimitMB=1024 -s3 "
                      f"-s3.port={s3_port} -s3.port.iceberg=0 -s3.port.lance=0",
                lambda: http_ok(f"http://127.0.0.1:{s3_port}/healthz")))
        services += [
            Service("mlflow", f"{py} -m mlflow_lab.services.tracking_server",
                    lambda: http_ok(f"http://127.0.0.1:{mlflow_port}/health")),
            Service("model-api", f"{py} -m mlflow_lab.services.model_api",
                    lambda: http_ok(f"http://127.0.0.1:{api_port}/v2/health/live")),
            Service("nginx", f"/bin/sh {self.nginx_conf / 'entrypoint.sh'}",
                    lambda: http_ok(f"http://127.0.0.1:{status_port}/nginx-health"),
                    user=self.user, stopsignal="QUIT"),
        ]
        return services

    # --- lifecycle ------------------------------------------------------------
    def prepare(self) -> None:
        ospackages.ensure_installed()
        for sub in ("logs", "home", "s3"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)
        self.private.mkdir(mode=0o755, parents=True, exist_ok=True)
        # The unprivileged nginx reads these copies (refreshed on every `up`), not the checkout.
        shutil.copytree(NGINX_DIR, self.nginx_conf, dirs_exist_ok=True)
        for sub in ("nginx", "postgres"):
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
                [ospackages.postgres_bin("initdb"), "-D", str(data), "-U", self.settings["POSTGRES_USER"],
                 f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C"],
                check=True, capture_output=True, text=True, user=self.user, cwd=self.private,
            )
        except subprocess.CalledProcessError as exc:
            raise LabError(f"initdb failed: {exc.stderr.strip()}") from None
        finally:
            pwfile.unlink()

    def _write_supervisor_conf(self) -> bool:
        """Write supervisord.conf; True when it differs from the one supervisord runs with."""
        # supervisord passes its own environment to the programs, so a changed setting
        # must change this file too: the hash makes `up` restart supervisord.
        env_hash = hashlib.sha256(json.dumps(self.service_env(), sort_keys=True).encode()).hexdigest()[:16]
        lines = [
            "; generated by the mlflow-lab native runner; edit runner.py, not this file",
            f"; environment {env_hash}",
            "[unix_http_server]", f"file={self.socket}", "chmod=0700", "",
            "[supervisord]", f"logfile={self.logs / 'supervisord.log'}", f"pidfile={self.state / 'supervisord.pid'}",
            f"directory={self.state}", "", "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{self.socket}", "",
        ]
        for svc in self.services():
            lines += [
                f"[program:{svc.name}]", f"command={svc.command}",
                # postgres and s3 start with supervisord; the rest wait for the init step.
                f"autostart={'true' if svc.name in ('postgres', 's3') else 'false'}",
                "autorestart=true", "startsecs=2", f"stopsignal={svc.stopsignal}", "stopwaitsecs=30",
                "stopasgroup=true", "killasgroup=true", "redirect_stderr=true",
                f"stdout_logfile={self.logs / svc.name}.log", "stdout_logfile_maxbytes=20MB",
                *([f"user={svc.user}", f"directory={self.private}"] if svc.user else []), "",
            ]
        text = "\n".join(lines)
        changed = not self.conf.exists() or self.conf.read_text() != text
        self.conf.write_text(text)
        return changed

    def supervisorctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        exe = Path(sys.executable).parent / "supervisorctl"
        return subprocess.run([str(exe), "-c", str(self.conf), *args], capture_output=True, text=True, check=check)

    def running(self) -> bool:
        return self.socket.exists() and self.supervisorctl("pid", check=False).returncode == 0

    def wait_ready(self, names: list[str], timeout: float = 120) -> None:
        pending = {svc.name: svc for svc in self.services() if svc.name in names}
        deadline = time.monotonic() + timeout
        while pending:
            pending = {name: svc for name, svc in pending.items() if not svc.ready()}
            for name in pending:
                if "FATAL" in self.supervisorctl("status", name, check=False).stdout:
                    raise LabError(f"{name} failed to start; see {self.logs / name}.log:\n{self.log_tail(name)}")
            if pending and time.monotonic() > deadline:
                name = next(iter(pending))
                raise LabError(f"{name} did not become ready within {timeout:.0f}s; "
                               f"see {self.logs / name}.log:\n{self.log_tail(name)}")
            time.sleep(0.3)

    def up(self) -> None:
        self.prepare()
        if self._write_supervisor_conf() and self.running():
            self.down()  # settings changed: restart everything with the new ones
        if not self.running():
            exe = Path(sys.executable).parent / "supervisord"
            subprocess.run([str(exe), "-c", str(self.conf)], check=True, env=self.service_env())
        stores = ["postgres", "s3"]
        self.supervisorctl("start", *stores, check=False)
        self.wait_ready(stores)
        init = subprocess.run([sys.executable, "-m", "mlflow_lab.services.init_stack"],
                              env=self.service_env(), capture_output=True, text=True)
        (self.logs / "init.log").write_text(init.stdout + init.stderr)
        if init.returncode != 0:
            raise LabError(f"the init step failed: {(init.stderr or init.stdout).strip()}")
        for name in ("mlflow", "model-api", "nginx"):
            self.supervisorctl("start", name, check=False)
            self.wait_ready([name])

    def restart(self, *names: str) -> None:
        self.supervisorctl("restart", *names, check=False)
        self.wait_ready(list(names))

    def down(self) -> None:
        if self.running():
            self.supervisorctl("shutdown", check=False)
            deadline = time.monotonic() + 60
            while self.socket.exists() and time.monotonic() < deadline:
                time.sleep(0.2)

    def remove_state(self) -> None:
        """Delete everything this stack keeps (stop it first)."""
        shutil.rmtree(self.state, ignore_errors=True)
        if self.private != self.state:
            shutil.rmtree(self.private, ignore_errors=True)

    def status(self) -> dict[str, str]:
        if not self.running():
            return {svc.name: "stopped" for svc in self.services()}
        return {svc.name: "healthy" if svc.ready() else "not ready" for svc in self.services()}

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def describe_s3(self) -> str:
        server = {"seaweedfs": "SeaweedFS", "minio": "MinIO"}[self.s3_mode]
        return f"{server} at 127.0.0.1:{self.settings['S3_PORT']} (bucket {self.settings['S3_BUCKET']})"
