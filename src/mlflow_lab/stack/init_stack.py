"""One-shot, idempotent init step that gates the tracking server.

1. wait for PostgreSQL, create the tracking and the auth database if missing, and leave
   the tracking database's statement errors to MLflow (see QUIET_STATEMENT_ERRORS);
2. `mlflow db upgrade` (creates the schema on an empty database, migrates an old one);
3. the read-only role the monitoring profile's PostgreSQL exporter logs in as (pg_monitor);
4. mark FAILED the runs of lab jobs that were killed (mlflow_lab.jobs.runs);
5. the auth app's schema, the lab's roles, the admin from .env (its password kept in step)
   and the model API's read-only account (mlflow_lab.stack.auth_store);
6. create the artifact bucket if it is missing.

Running it again changes nothing. Compose runs it as the `init` service; the native
runner runs it between starting the stores and starting the tracking server. On Kubernetes
it is a Job, and `--wait` (the tracking server's init container) only waits for its schema.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psycopg2
from psycopg2 import errors as pg_errors
from psycopg2 import sql
from psycopg2.extensions import encrypt_password

from mlflow_lab.errors import LabError
from mlflow_lab.jobs import ALIVE_UNTIL_TAG
from mlflow_lab.settings import Settings
from mlflow_lab.stack.auth_store import ensure_lab_accounts
from mlflow_lab.storage import ensure_bucket

WAIT_SECONDS = 60
SCHEMA_WAIT_SECONDS = 600  # `--wait`: how long another process's init may take
# MLflow's SQL store uses unique violations as control flow: it inserts, and on a duplicate
# key rolls back and carries on. MLflow 3 hits this on every `log_model` after `log_metrics`
# (the run's metrics are logged again, linked to the new logged model) and on every
# registration under an existing name. PostgreSQL would log each as an ERROR with the whole
# INSERT; MLflow already handles or reports every statement error itself. So for the
# tracking database only, log from FATAL up (failed logins, crashes, lost connections).
QUIET_STATEMENT_ERRORS = "ALTER DATABASE {} SET log_min_messages = fatal"


def _connect(settings: Settings, dbname: str):
    host, port = settings.postgres_address
    return psycopg2.connect(
        host=host,
        port=port,
        user=settings["POSTGRES_USER"],
        password=settings["POSTGRES_PASSWORD"],
        dbname=dbname,
        connect_timeout=5,
    )


def ensure_database(settings: Settings) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            conn = _connect(settings, "postgres")
            break
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise LabError(f"PostgreSQL did not accept connections within {WAIT_SECONDS}s: {exc}".strip()) from None
            time.sleep(1)
    # CREATE DATABASE cannot run in a transaction (and `with conn` would open one).
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in (settings["POSTGRES_DB"], settings["POSTGRES_AUTH_DB"]):
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"init: created database {name}")
        try:
            cur.execute(sql.SQL(QUIET_STATEMENT_ERRORS).format(sql.Identifier(settings["POSTGRES_DB"])))
        except pg_errors.InsufficientPrivilege:  # a managed server where the lab's user is no superuser
            print("init: not a superuser, so PostgreSQL keeps logging the duplicate-key errors MLflow handles")
    conn.close()


def ensure_monitor_role(settings: Settings) -> None:
    """POSTGRES_MONITOR_USER with POSTGRES_MONITOR_PASSWORD, in pg_monitor: statistics and
    settings, no table data. The password is hashed here (SCRAM), so no statement carries it
    in clear text, not even in PostgreSQL's log of a failed one."""
    name = settings["POSTGRES_MONITOR_USER"]
    with contextlib.closing(_connect(settings, "postgres")) as conn:
        conn.autocommit = True
        verifier = encrypt_password(settings["POSTGRES_MONITOR_PASSWORD"], name, conn, "scram-sha-256")
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            try:
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)), (verifier,))
                cur.execute(sql.SQL("GRANT pg_monitor TO {}").format(sql.Identifier(name)))
            except pg_errors.InsufficientPrivilege:  # a managed server where the lab's user may not make roles
                print(f"init: may not make the role {name}, so the postgres exporter (profile monitoring) cannot log in")
                return
    if verb == "CREATE":
        print(f"init: created the monitoring role {name}")


def upgrade_schema(settings: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlflow", "db", "upgrade", settings.backend_store_uri()],
        env={**os.environ, **settings.backend_store_env()},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise LabError(f"mlflow db upgrade failed: {result.stderr.strip().splitlines()[-1:]}")
    print("init: backend store schema is current")


def fail_abandoned_runs(settings: Settings) -> None:
    """Runs still RUNNING whose job promised a heartbeat that never came (it was killed):
    FAILED, ended now. Runs of other clients carry no such tag and are left alone."""
    now = time.time()
    with contextlib.closing(_connect(settings, settings["POSTGRES_DB"])) as conn, conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE runs SET status = 'FAILED', end_time = %s WHERE status = 'RUNNING' AND run_uuid IN "
            "(SELECT run_uuid FROM tags WHERE key = %s AND value ~ '^[0-9]+$' AND value::bigint < %s) RETURNING run_uuid",
            (int(now * 1000), ALIVE_UNTIL_TAG, int(now)),
        )
        failed = [row[0] for row in cur.fetchall()]
    if failed:
        print(f"init: marked {len(failed)} run(s) FAILED whose job stopped without ending them: {', '.join(failed)}")


def schema_revision(settings: Settings) -> str | None:
    """The tracking database's alembic revision; None while it has no schema (or is unreachable)."""
    try:
        with contextlib.closing(_connect(settings, settings["POSTGRES_DB"])) as conn, conn.cursor() as cur:
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
    except psycopg2.Error:
        return None
    return row[0] if row else None


def wait_for_schema(settings: Settings, seconds: float = SCHEMA_WAIT_SECONDS) -> None:
    """Until init (another process: Kubernetes' init Job) has brought the schema to this MLflow's head."""
    from mlflow_lab.adapters.mlflow_internals import latest_schema_revision

    head, deadline = latest_schema_revision(), time.monotonic() + seconds
    while (found := schema_revision(settings)) != head:
        if time.monotonic() > deadline:
            raise LabError(
                f"the tracking database is at schema {found or 'none'}, not {head}, after {seconds:.0f}s: has init run?"
            )
        time.sleep(2)
    print(f"init: schema {head} is current")


def main() -> None:
    settings = Settings.load(env_file=None)
    if sys.argv[1:] == ["--wait"]:
        try:
            settings.validate("wait-for-schema", passwords=False)
            wait_for_schema(settings)
        except LabError as exc:
            sys.exit(f"init: {exc}")
        return
    try:
        # The first step of either runner, and every other service waits for it: the one
        # place where each password (the schema's generated secrets) is checked before anything uses it.
        settings.validate("init")
        ensure_database(settings)
        upgrade_schema(settings)
        ensure_monitor_role(settings)
        fail_abandoned_runs(settings)
        os.environ.update(settings.backend_store_env())  # the auth store's engine, in this process
        for change in ensure_lab_accounts(settings):
            print(f"init: {change}")
        created = ensure_bucket(settings)
        print(f"init: bucket {settings['S3_BUCKET']} {'created' if created else 'exists'}")
    except LabError as exc:
        sys.exit(f"init: {exc}")


if __name__ == "__main__":
    main()
