"""Entrypoint of the MLflow tracking server (container CMD and native supervisor program).

Builds the `mlflow server` command line from the environment and execs it, so both
runners start the server with exactly the same flags.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings

# Names the server is reached by inside the stack (healthchecks, nginx upstream).
INTERNAL_HOSTS = ("mlflow", "localhost", "127.0.0.1")
# uvicorn closes an idle keep-alive connection after 5 s by default, exactly the model API's
# poll interval (MODEL_API_POLL_SECONDS): its registry polls kept meeting a connection the
# server was closing ("Connection reset by peer", urllib3 retries; measured: 18 of 40 reuses
# after a 5.0 s gap failed, none after 4 s). Outlast any in-stack client's idle gap, as
# nginx's own client keep-alive (75 s) does.
KEEPALIVE_SECONDS = 75


def allowed_hosts(settings: Settings) -> list[str]:
    """Host header values to accept: MLflow compares host[:port] exactly or by fnmatch."""
    names = [*settings.server_names(), *INTERNAL_HOSTS]
    hosts = [pattern for name in names for pattern in (name, f"{name}:*")]
    extra = settings.get("MLFLOW_EXTRA_ALLOWED_HOSTS")
    hosts += [h.strip() for h in extra.split(",") if h.strip()]
    return list(dict.fromkeys(hosts))


def cors_origins(settings: Settings) -> list[str]:
    """Origins of the UI as browsers see it through nginx (any port, http or https)."""
    return [f"{scheme}://{name}{port}" for name in settings.server_names() for scheme in ("http", "https") for port in ("", ":*")]


def artifacts_destination(settings: Settings) -> tuple[str, dict[str, str]]:
    """Where the server keeps artifacts, and the environment its S3 client needs."""
    env = {
        "MLFLOW_S3_ENDPOINT_URL": settings["S3_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": settings["S3_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": settings["S3_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": settings["S3_REGION"],
    }
    return f"s3://{settings['S3_BUCKET']}", env


def auth_config(settings: Settings) -> str:
    """MLflow's auth app's INI file (no secret in it: the database password goes by PGPASSWORD).
    What each account may do comes from the lab's roles (mlflow_lab.accounts); outside its
    workspaces an account sees nothing (grant_default_workspace_access off)."""
    ttl = settings.int("LAB_AUTH_CACHE_SECONDS")
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {settings.auth_store_uri()}\n"
        f"admin_username = {settings['LAB_USER']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # PBKDF2 costs tens of milliseconds a request without it (design.md).
        f"auth_cache_ttl_seconds = {ttl}\n"
    )


# Where archived spans go, under the bucket's root: beside the experiments' folders
# (mlflow-artifacts:/<id>, workspaces/<name>/<id>), never inside one (MLflow adds
# workspaces/<name>/<experiment id>/traces/<trace id>/artifacts/traces.pb).
TRACE_ARCHIVE_PREFIX = "trace-archive"


def trace_archival_config(settings: Settings, interval: int | None = None) -> str:
    """MLflow's trace archival config (MLFLOW_TRACE_ARCHIVAL_CONFIG, YAML): spans of traces older
    than LAB_TRACE_RETENTION move to the bucket. Its interval_seconds (default
    LAB_TRACE_ARCHIVAL_INTERVAL) is the least time MLflow lets pass between two passes of one process."""
    from mlflow_lab.settings_schema import duration_seconds

    destination, _ = artifacts_destination(settings)
    if interval is None:
        interval = int(duration_seconds(settings["LAB_TRACE_ARCHIVAL_INTERVAL"]))
    return (
        "trace_archival:\n"
        "  enabled: true\n"
        f"  location: {destination}/{TRACE_ARCHIVE_PREFIX}\n"
        f"  retention: {settings['LAB_TRACE_RETENTION']}\n"
        f"  interval_seconds: {interval}\n"
    )


def write_trace_archival_config(settings: Settings, interval: int | None = None) -> Path:
    path = Path(tempfile.mkdtemp(prefix="mlflow-trace-archival-")) / "trace-archival.yaml"
    path.write_text(trace_archival_config(settings, interval))
    return path


def job_runner_on(settings: Settings) -> bool:
    return settings["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


def write_auth_config(settings: Settings) -> Path:
    path = Path(tempfile.mkdtemp(prefix="mlflow-auth-")) / "auth.ini"
    path.write_text(auth_config(settings))
    return path


def command(settings: Settings, metrics_dir: str, archival_config: Path) -> tuple[list[str], dict[str, str]]:
    destination, env = artifacts_destination(settings)
    env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = settings["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    # MLflow's job runner (huey consumers, ~1.7 GB idle) is off unless the setting says true.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = settings["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]
    env.update(settings.backend_store_env())
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        settings["MLFLOW_BIND_HOST"],
        "--port",
        settings["MLFLOW_PORT"],
        "--workers",
        settings["MLFLOW_WORKERS"],
        "--backend-store-uri",
        settings.backend_store_uri(),
        # MLflow's accounts, roles and team workspaces (mlflow_lab.stack.auth_app).
        "--app-name",
        "mlflow-lab",
        "--enable-workspaces",
        # Every worker's request metrics go to metrics_dir (prometheus_flask_exporter), which
        # mlflow_lab.stack.tracking_metrics serves on MLFLOW_METRICS_PORT.
        "--expose-prometheus",
        metrics_dir,
        # Clients only ever see mlflow-artifacts:/ URIs; S3 credentials stay here.
        "--serve-artifacts",
        "--artifacts-destination",
        destination,
        # Old traces' spans to the bucket (the server reads them back from there, and its
        # server-info tells the UI archival is on); the passes: mlflow_lab.gc.traces.
        "--trace-archival-config",
        str(archival_config),
        "--uvicorn-opts",
        f"--timeout-keep-alive {KEEPALIVE_SECONDS}",
        # Never --gunicorn-opts/--waitress-opts: they switch off these checks (--uvicorn-opts keeps them).
        "--allowed-hosts",
        ",".join(allowed_hosts(settings)),
        "--cors-allowed-origins",
        ",".join(cors_origins(settings)),
    ]
    return argv, env


def beside_the_server(module: str, *args: str) -> None:
    """Start `python -m module args` as this process's child, which it stays once this process
    becomes the server (exec): in the server's process group, so a supervisor that stops the
    group stops it too."""
    subprocess.Popen([sys.executable, "-m", module, *args])


def main() -> None:
    settings = Settings.load(env_file=None)
    try:
        settings.validate("mlflow", passwords=False)
        metrics_dir = tempfile.mkdtemp(prefix="mlflow-metrics-")  # fresh: no dead workers' counters
        argv, extra_env = command(settings, metrics_dir, write_trace_archival_config(settings))
    except LabError as exc:
        sys.exit(f"mlflow: {exc}")
    os.environ.update(extra_env)
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(write_auth_config(settings))
    beside_the_server(
        "mlflow_lab.stack.tracking_metrics", metrics_dir, settings["MLFLOW_BIND_HOST"], settings["MLFLOW_METRICS_PORT"]
    )
    if not job_runner_on(settings):
        # MLflow runs trace archival only in its job runner (off here, for memory): the lab's
        # scheduler runs the same pass. Idle it holds the standard library only (each pass is a
        # process of its own).
        beside_the_server("mlflow_lab.gc.traces", "--schedule")
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
