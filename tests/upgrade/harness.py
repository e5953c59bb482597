"""A lab as MLflow 2.x left it, for the upgrade tests.

MLflow 2.22.5 (the last 2.x release; a side virtual environment from
requirements-mlflow2.txt) runs its own server on a native lab's PostgreSQL and bucket, behind
the lab's nginx, and its client trains, logs and moves a model to Production, as a lab of a
year ago would hold. `lab backup` archives that lab (an archive of MLflow 2's schema, for the
restore tests of both runners); then this MLflow's lab comes up on the same data."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow_lab.backup import operations
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import Settings
from mlflow_lab.stack import init_stack, tracking_server
from mlflow_lab.storage import ensure_bucket
from mlflow_lab.testing.ports import fresh_settings
from mlflow_lab.testing.stacks import http_ok, new_state_dir, remove_state

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "requirements-mlflow2.txt"
NAME = "wine-quality"  # a model the model API serves (MODEL_API_MODELS)


def mlflow2_python() -> Path:
    """The side environment's python, created once per requirements file."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"mlflow-lab-mlflow2-{digest}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)], check=True)
        (venv / ".complete").touch()
    return python


def on_loopback(settings: Settings) -> Settings:
    """The settings as a program on the host reaches the native stores."""
    return Settings(
        {
            **settings.as_env(),
            "POSTGRES_HOST": "127.0.0.1",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{settings['S3_PORT']}",
        }
    )


def start_stores_only(stack: NativeStack) -> None:
    """PostgreSQL and the S3 server under the lab's supervisor, nothing of this MLflow yet."""
    stack.prepare()
    stack._write_supervisor_conf(stack.programs())
    subprocess.run([str(Path(sys.executable).parent / "supervisord"), "-c", str(stack.conf)], check=True)
    stack.supervisorctl("start", "postgres", "s3")
    stack.wait_ready(["postgres", "s3"])


@contextlib.contextmanager
def mlflow2_server(python: Path, settings: Settings, log: Path):
    destination, s3_env = tracking_server.artifacts_destination(settings)
    port = settings["MLFLOW_PORT"]
    argv = [str(python), "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", port, "--workers", "1"]
    argv += ["--backend-store-uri", settings.backend_store_uri(), "--serve-artifacts", "--artifacts-destination", destination]
    env = {**os.environ, **s3_env, **settings.backend_store_env()}
    with log.open("w") as out:
        server = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not http_ok(f"http://127.0.0.1:{port}/health"):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)


@contextlib.contextmanager
def mlflow2_lab(folder: Path):
    """Yield (stack, what the old client wrote, the old schema revision, a backup archive of
    the old lab) with the stack already brought up by this MLflow; removed afterwards."""
    python = mlflow2_python()
    stack = NativeStack(fresh_settings(), new_state_dir())
    try:
        start_stores_only(stack)
        stores = on_loopback(stack.settings)
        init_stack.ensure_database(stores)
        ensure_bucket(stores)
        with mlflow2_server(python, stores, folder / "server.log") as url:
            written = subprocess.run(
                [str(python), str(HERE / "old_client.py"), NAME],
                env={**os.environ, "MLFLOW_TRACKING_URI": url},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert written.returncode == 0, written.stderr[-3000:]
            old_revision = init_stack.schema_revision(stores)
            # Straight to the old server: this nginx asks MLflow's auth app about every
            # request, which an MLflow 2 lab did not run (its accounts were nginx's own).
            direct = Settings({**stack.settings.as_env(), "LAB_HTTP_PORT": stack.settings["MLFLOW_PORT"]})
            archive = operations.backup(stack, direct, folder)
        stack.up()  # this MLflow: init upgrades the schema, then everything starts
        yield stack, json.loads(written.stdout.splitlines()[-1]), old_revision, archive
    finally:
        stack.down()
        remove_state(stack)
