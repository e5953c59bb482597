"""The lab's databases in a backup: the tracking database's dump consistent with its row
counts, the accounts' as it is, and a restore that the lab sees all at once or not at all.

Every program (psql, pg_dump, pg_restore) runs where the runner says: in the PostgreSQL
container under Compose (its own client programs, never older than the server), from the
OS packages natively. The dump goes through their standard output, so both look the same here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlflow_lab.errors import LabError
from mlflow_lab.runners import Runner

# What the manifest counts, and a restore checks: MLflow's tables a user would miss first.
COUNTED = ("experiments", "runs", "metrics", "params", "tags", "registered_models", "model_versions")
COUNT_QUERY = "SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table in COUNTED)
RESTORING = "{}_restoring"  # where a restore builds the database before it swaps it in
REPLACED = "{}_replaced"


def _counted(row: str) -> dict[str, int]:
    """COUNT_QUERY's one row, as psql -At prints it."""
    return dict(zip(COUNTED, map(int, row.split("|")), strict=True))


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no message"])[-1]


class Database:
    def __init__(self, runner: Runner, name: str):
        self.runner, self.name = runner, name

    def _command(self, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        return self.runner.postgres_command(argv)

    def query(self, sql: str, database: str | None = None) -> list[str]:
        """Rows of one statement, columns separated by |."""
        argv, env = self._command(["psql", "-qAt", "-v", "ON_ERROR_STOP=1", "-d", database or self.name, "-c", sql])
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise LabError(f"PostgreSQL refused `{sql[:60]}`: {_last_line(result.stderr)}")
        return result.stdout.splitlines()

    def counts(self, database: str | None = None) -> dict[str, int]:
        row = self.query(COUNT_QUERY, database)[0]
        return _counted(row)

    def dump(self, path: Path) -> tuple[str, dict[str, int]]:
        """pg_dump (custom format) into `path`; the schema revision and row counts of exactly
        what was dumped: both read in one exported snapshot while the lab keeps writing."""
        argv, env = self._command(["psql", "-qAt", "-v", "ON_ERROR_STOP=1", "-d", self.name])
        with subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        ) as session:
            assert session.stdin and session.stdout and session.stderr
            to_psql, from_psql, errors = session.stdin, session.stdout, session.stderr

            def ask(sql: str) -> str:
                to_psql.write(sql + ";\n")
                to_psql.flush()
                answer = from_psql.readline()
                if not answer:
                    raise LabError(f"PostgreSQL ended the backup's session: {_last_line(errors.read())}")
                return answer.strip()

            try:
                to_psql.write("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n")
                snapshot = ask("SELECT pg_export_snapshot()")
                revision = ask("SELECT version_num FROM alembic_version")
                counts = _counted(ask(COUNT_QUERY))
                argv, env = self._command(["pg_dump", "--format=custom", f"--snapshot={snapshot}", "-d", self.name])
                with path.open("wb") as out:
                    result = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
                if result.returncode != 0:
                    raise LabError(f"pg_dump failed: {_last_line(result.stderr)}")
                to_psql.write("COMMIT;\n")
            finally:
                to_psql.close()
        return revision, counts

    def dump_whole(self, path: Path) -> None:
        """pg_dump (custom format) into `path`, with no counts: the accounts' database."""
        argv, env = self._command(["pg_dump", "--format=custom", "-d", self.name])
        with path.open("wb") as out:
            result = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise LabError(f"pg_dump of {self.name} failed: {_last_line(result.stderr)}")

    def load_beside(self, dump: Path) -> str:
        """Restore `dump` into a new database next to the lab's (which stays untouched); its name."""
        scratch = RESTORING.format(self.name)
        self.drop(scratch)
        self.query(f'CREATE DATABASE "{scratch}"', "postgres")
        argv, env = self._command(
            ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", "-d", scratch]
        )
        with dump.open("rb") as source:
            result = subprocess.run(argv, env=env, stdin=source, capture_output=True)
        if result.returncode != 0:
            self.drop(scratch)
            raise LabError(f"pg_restore failed: {_last_line(result.stderr.decode(errors='replace'))}")
        return scratch

    def swap_in(self, scratch: str) -> None:
        """Make `scratch` the lab's database. The tracking server's pooled connections are cut
        (SQLAlchemy's pre-ping replaces them); nobody can connect in between."""
        replaced = REPLACED.format(self.name)
        self.drop(replaced)
        self.query(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false', "postgres")
        try:
            self.query(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'", "postgres")
            self.query(f'ALTER DATABASE "{self.name}" RENAME TO "{replaced}"', "postgres")
        except LabError:
            self.query(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true', "postgres")
            raise
        self.query(f'ALTER DATABASE "{scratch}" RENAME TO "{self.name}"', "postgres")
        self.drop(replaced)

    def drop(self, database: str) -> None:
        self.query(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', "postgres")
