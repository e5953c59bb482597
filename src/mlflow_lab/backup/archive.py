"""The backup archive: a tar file with the database dump, the artifact objects and a manifest.

Layout:  database.pgdump · accounts.pgdump (MLflow's auth database; absent from archives made
before the lab's accounts moved into it) · artifacts/<key> ... · manifest.json (last: written
once all is in).
Nothing in it is trusted before `unpack` has checked every file against the manifest's sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlflow_lab.errors import LabError

FORMAT = "mlflow-lab-backup/1"
MANIFEST = "manifest.json"
DATABASE = "database.pgdump"
ACCOUNTS = "accounts.pgdump"
OBJECTS = "artifacts/"
CHUNK = 1 << 20


@dataclass
class Entry:
    name: str  # the file's name in the archive
    bytes: int
    sha256: str


@dataclass
class Manifest:
    created: str
    mlflow_version: str
    schema_revision: str
    rows: dict[str, int]
    database: Entry
    objects: list[Entry] = field(default_factory=list)
    accounts: Entry | None = None
    format: str = FORMAT

    @property
    def object_bytes(self) -> int:
        return sum(entry.bytes for entry in self.objects)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "object_count": len(self.objects)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT!r}")
        return cls(
            created=raw["created"],
            mlflow_version=raw["mlflow_version"],
            schema_revision=raw["schema_revision"],
            rows={name: int(count) for name, count in raw["rows"].items()},
            database=Entry(**raw["database"]),
            objects=[Entry(**entry) for entry in raw["objects"]],
            accounts=Entry(**raw["accounts"]) if raw.get("accounts") else None,
        )


def object_name(key: str) -> str:
    return OBJECTS + key


def object_key(name: str) -> str:
    return name.removeprefix(OBJECTS)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Writer:
    """Adds files to the archive, each with its size and sha256 for the manifest."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar

    def add(self, name: str, path: Path) -> Entry:
        entry = Entry(name, path.stat().st_size, sha256_of(path))
        info = tarfile.TarInfo(name)
        info.size, info.mode = entry.bytes, 0o600
        with path.open("rb") as source:
            self.tar.addfile(info, source)
        return entry

    def add_manifest(self, manifest: Manifest) -> None:
        data = manifest.to_json().encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(data), 0o600
        self.tar.addfile(info, io.BytesIO(data))


@contextlib.contextmanager
def writing(final: Path) -> Iterator[Writer]:
    """Write through a hidden partial file: `final` appears only once complete and on disk."""
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the lab's data: the owner's only
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            yield Writer(tar)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)


def unpack(archive: Path, into: Path) -> Manifest:
    """Extract `archive` into `into` and check every file against the manifest; a LabError
    (one sentence naming the archive) for anything that is not a whole, untampered backup."""
    if not archive.is_file():
        raise LabError(f"{archive} does not exist (or is not a file).")
    try:
        with tarfile.open(archive, mode="r:") as tar:
            names = tar.getnames()
            if MANIFEST not in names:
                raise LabError(f"{archive} is not a mlflow-lab backup, or is truncated: it has no {MANIFEST}.")
            unexpected = [name for name in names if name not in (MANIFEST, DATABASE, ACCOUNTS) and not name.startswith(OBJECTS)]
            if unexpected:
                raise LabError(f"{archive} is not a mlflow-lab backup: it holds {unexpected[0]}.")
            tar.extractall(into, filter="data")  # no absolute paths, links out or devices
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise LabError(f"{archive} is not a readable mlflow-lab backup (truncated or not a tar archive: {exc}).") from None
    try:
        manifest = Manifest.from_json((into / MANIFEST).read_text())
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{archive} has no valid mlflow-lab manifest ({exc}).") from None
    expected = [manifest.database, *([manifest.accounts] if manifest.accounts else []), *manifest.objects]
    for entry in expected:
        path = into / entry.name
        if not path.is_file():
            raise LabError(f"{archive} is damaged: {entry.name} is missing.")
        if path.stat().st_size != entry.bytes or sha256_of(path) != entry.sha256:
            raise LabError(f"{archive} is damaged: {entry.name} does not match the sha256 in its manifest.")
    listed = {entry.name for entry in expected}
    extra = [p for p in into.rglob("*") if p.is_file() and p.relative_to(into).as_posix() not in listed | {MANIFEST}]
    if extra:
        raise LabError(f"{archive} is damaged: {extra[0].relative_to(into)} is not in its manifest.")
    return manifest
