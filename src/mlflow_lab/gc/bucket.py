"""The artifact bucket as garbage collection sees it: its size, where an artifact URI lies in
it, and a folder deleted but for what the registry still downloads."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings
from mlflow_lab.storage import s3_client

BATCH = 1000  # keys per DeleteObjects request, S3's limit


@dataclass
class Tally:
    """A number of objects and their bytes."""

    objects: int = 0
    bytes: int = 0

    def add(self, other: Tally) -> None:
        self.objects += other.objects
        self.bytes += other.bytes

    def __str__(self) -> str:
        return f"{self.bytes / 1e6:.2f} MB in {self.objects} object{'' if self.objects == 1 else 's'}"


def within(key: str, locations: Collection[str]) -> bool:
    """Whether `key` is one of `locations` or lies under one (a folder)."""
    parts = key.split("/")
    return any("/".join(parts[:depth]) in locations for depth in range(1, len(parts) + 1))


class Bucket:
    def __init__(self, settings: Settings):
        self.name = settings["S3_BUCKET"]
        self.endpoint = settings["S3_ENDPOINT_URL"]
        self.s3 = s3_client(settings)

    def key_of(self, uri: str) -> str | None:
        """Where an artifact URI lies in the bucket: the tracking server serves mlflow-artifacts:/<path>
        from s3://<bucket>/<path> (its --artifacts-destination); None for a URI elsewhere."""
        parsed = urlparse(uri)
        if parsed.scheme == "mlflow-artifacts" or (parsed.scheme == "s3" and parsed.netloc == self.name):
            return parsed.path.strip("/")
        return None

    def objects(self, folder: str = "") -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `folder` (the whole bucket for "")."""
        prefix = f"{folder}/" if folder else ""
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], item["Size"]
        except (BotoCoreError, ClientError) as exc:
            raise LabError(f"cannot list bucket {self.name} at {self.endpoint}: {exc}") from None

    def size(self) -> Tally:
        total = Tally()
        for _, size in self.objects():
            total.add(Tally(1, size))
        return total

    def delete_folder(self, folder: str, keep: Collection[str]) -> tuple[Tally, Tally]:
        """Delete every object under `folder` but those within a `keep` location; (deleted, kept)."""
        if not folder:
            raise LabError("garbage collection was asked to delete the whole bucket; it deleted nothing.")
        deleted, kept, doomed = Tally(), Tally(), []
        for key, size in self.objects(folder):
            if within(key, keep):
                kept.add(Tally(1, size))
            else:
                doomed.append(key)
                deleted.add(Tally(1, size))
        for start in range(0, len(doomed), BATCH):
            batch = [{"Key": key} for key in doomed[start : start + BATCH]]
            answer = self.s3.delete_objects(Bucket=self.name, Delete={"Objects": batch, "Quiet": True})
            if errors := answer.get("Errors"):
                raise LabError(f"the S3 server did not delete {errors[0]['Key']}: {errors[0].get('Message', errors[0]['Code'])}.")
        return deleted, kept
