"""`lab backup` and `lab restore`: the order of the steps, and what they tell the user.

Backup: dump first, objects after, so that every row restored points to an object that is
in the archive (an object written later is merely extra). Restore: everything that can be
checked is checked before the lab is touched (the archive whole and untampered, its schema
known to this MLflow, the lab up and empty or FORCE); then the database is built beside the
lab's, the objects uploaded, and the database swapped in at once.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from mlflow_lab.backup import archive
from mlflow_lab.backup.artifacts import ArtifactProxy
from mlflow_lab.backup.database import Database
from mlflow_lab.errors import LabError
from mlflow_lab.runners import Runner
from mlflow_lab.settings import Settings

T = TypeVar("T")


def say(message: str) -> None:
    print(message, file=sys.stderr)


def progress(items: list[T], label: str) -> Iterable[T]:
    """`items`, with a progress bar on a terminal (stderr: stdout carries the result)."""
    if not sys.stderr.isatty() or not items:
        return items
    from rich.console import Console
    from rich.progress import track

    return track(items, description=label, transient=True, console=Console(stderr=True))


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def backup(runner: Runner, settings: Settings, folder: Path) -> Path:
    started = time.monotonic()
    proxy = ArtifactProxy(settings)
    next(iter(proxy.keys()), None)  # the lab answers with these credentials, before anything is written
    server_version = proxy.server_version()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    final = folder / f"mlflow-lab-{stamp}.tar"
    with tempfile.TemporaryDirectory(prefix="mlflow-lab-backup-") as scratch, archive.writing(final) as out:
        dump = Path(scratch) / archive.DATABASE
        revision, rows = Database(runner, settings["POSTGRES_DB"]).dump(dump)
        database = out.add(archive.DATABASE, dump)
        dump.unlink()
        accounts_dump = Path(scratch) / archive.ACCOUNTS
        Database(runner, settings["POSTGRES_AUTH_DB"]).dump_whole(accounts_dump)
        accounts = out.add(archive.ACCOUNTS, accounts_dump)
        accounts_dump.unlink()
        objects = []
        for key, _ in progress(list(proxy.keys()), "artifacts"):
            local = Path(scratch) / "object"
            proxy.download(key, local)
            objects.append(out.add(archive.object_name(key), local))
        out.add_manifest(archive.Manifest(stamp, server_version, revision, rows, database, objects, accounts))
    say(
        f"backup: {final} ({_size(final.stat().st_size)}; {rows['runs']} runs, {rows['model_versions']} model versions, "
        f"{len(objects)} objects, the accounts) in {time.monotonic() - started:.1f} s. It holds no secret in the clear "
        "(passwords only as MLflow's hashes): keep .env separately."
    )
    return final


def known_revision(revision: str) -> bool:
    """Whether this MLflow's migrations know the schema revision (else it is from a newer MLflow)."""
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    from mlflow_lab.adapters.mlflow_internals import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _describe(rows: dict[str, int], objects: int) -> str:
    return f"{rows['runs']} runs, {rows['registered_models']} registered models and {objects} artifact objects"


def restore(runner: Runner, settings: Settings, file: Path, force: bool) -> None:
    started = time.monotonic()
    proxy, database = ArtifactProxy(settings), Database(runner, settings["POSTGRES_DB"])
    with tempfile.TemporaryDirectory(prefix="mlflow-lab-restore-") as scratch:
        manifest = archive.unpack(file, Path(scratch))
        if not known_revision(manifest.schema_revision):
            raise LabError(
                f"{file} is from a newer MLflow ({manifest.mlflow_version}, schema {manifest.schema_revision}) "
                f"than this lab's ({mlflow_version()}): restore it with that version."
            )
        present = dict(proxy.keys())  # also: the lab is up and takes our credentials
        rows = database.counts()
        if rows["runs"] or rows["registered_models"]:
            if not force:
                raise LabError(
                    f"the lab already holds {_describe(rows, len(present))}: "
                    "restoring replaces them all; run again with FORCE=1 to do so."
                )
            say(f"restore: replacing the lab's {_describe(rows, len(present))}")
        loaded = database.load_beside(Path(scratch) / archive.DATABASE)
        accounts = Database(runner, settings["POSTGRES_AUTH_DB"])
        accounts_loaded = accounts.load_beside(Path(scratch) / archive.ACCOUNTS) if manifest.accounts else None
        try:
            if (found := database.counts(loaded)) != manifest.rows:
                raise LabError(f"{file} does not restore to the rows its manifest counts ({found} != {manifest.rows}).")
            for entry in progress(manifest.objects, "artifacts"):
                proxy.upload(archive.object_key(entry.name), Path(scratch) / entry.name)
            database.swap_in(loaded)
            if accounts_loaded:
                accounts.swap_in(accounts_loaded)
        finally:
            database.drop(loaded)  # gone already once swapped in
            if accounts_loaded:
                accounts.drop(accounts_loaded)
    if not manifest.accounts:
        say(f"restore: {file.name} holds no accounts (made before MLflow held them): the lab's accounts stay as they are")
    # `mlflow db upgrade` for an older schema; the admin and the model API's account in step with .env
    runner.run_init()
    stale = sorted(set(present) - {archive.object_key(entry.name) for entry in manifest.objects})
    if stale:
        say(f"restore: deleting {len(stale)} artifact object(s) the restored lab does not hold")
        for key in stale:
            proxy.delete(key)
    revision = database.query("SELECT version_num FROM alembic_version")[0]
    upgraded = f" (schema upgraded to {revision})" if revision != manifest.schema_revision else ""
    say(
        f"restore: {_describe(manifest.rows, len(manifest.objects))} from {file.name} "
        f"(MLflow {manifest.mlflow_version}){upgraded} in {time.monotonic() - started:.1f} s."
    )
