"""Garbage collection as an operator runs it: a run, a logged model, an experiment and a run in
a team's workspace deleted through the lab (MLflow's client, through nginx), then `lab gc --older-than 0s` (what
`make gc OLDER_THAN=0s` runs). Their objects are gone from the bucket, read straight from the
S3 server; every other object is byte-identical; the Production model, and a version that
downloads from a deleted run's folder, still load; the bucket takes less space. A duration it
cannot read is refused in one sentence.

`lab gc` runs the collection beside the tracking server, where each runner puts it (in its
container, or as its program): a contract test of each runner."""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlflow_lab.native.overlay import SEAWEEDFS_PORT_OFFSETS
from tests.stack.people import cli

pytestmark = [pytest.mark.stack, pytest.mark.contract]

# What the oracle reads in PostgreSQL: the folders of everything deleted (any workspace), and
# where the registry downloads each version from. Written here, not taken from mlflow_lab.gc.
DELETED_FOLDERS = """
    SELECT artifact_uri FROM runs WHERE lifecycle_stage = 'deleted'
    UNION SELECT artifact_location FROM logged_models WHERE lifecycle_stage = 'deleted'
    UNION SELECT artifact_location FROM experiments WHERE lifecycle_stage = 'deleted'
"""
REGISTRY_SOURCES = "SELECT COALESCE(NULLIF(storage_location, ''), source) FROM model_versions"
SEAWEEDFS_MASTER_PORT = 9333  # inside the s3 container; natively S3_PORT + its offset


def key_of(uri: str) -> str:
    """mlflow-artifacts:/<path> lies at s3://<bucket>/<path>."""
    assert uri.startswith("mlflow-artifacts:/"), uri
    return uri.removeprefix("mlflow-artifacts:/").strip("/")


def under(key: str, folders) -> bool:
    return any(key == folder or key.startswith(folder + "/") for folder in folders)


def bucket(lab) -> dict[str, tuple[int, str]]:
    """key -> (size, sha256) of every object, read from the S3 server itself."""
    s3, name, found = lab.s3(), lab.settings["S3_BUCKET"], {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=name, Key=item["Key"])["Body"]
            found[item["Key"]] = (item["Size"], hashlib.file_digest(body, "sha256").hexdigest())
    return found


def disk_usage(folder: Path) -> int:
    """Bytes the S3 server's data directory takes on the disk."""
    return sum(path.lstat().st_blocks * 512 for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def vacuum(lab) -> None:
    """What SeaweedFS does by itself every 14 minutes for a volume with 30 % garbage, now for any
    garbage: rewrite its volumes without the deleted objects."""
    native = lab.runner == "native"
    port = int(lab.settings["S3_PORT"]) + SEAWEEDFS_PORT_OFFSETS["master"] if native else SEAWEEDFS_MASTER_PORT
    url = f"http://127.0.0.1:{port}/vol/vacuum?garbageThreshold=0.0001"
    result = lab.stack.exec("s3", ["curl", "-fsS", "-o", "/dev/null", url])
    assert result.returncode == 0, result.stderr


def s3_service(lab) -> str | None:
    """The Compose service of the lab's S3 server (None: one outside the lab, S3_ENDPOINT_URL's)."""
    profiles = lab.stack.profiles()
    return "s3" if "seaweedfs" in profiles else "minio" if "minio" in profiles else None


def data_usage(lab) -> int | None:
    service = s3_service(lab)
    return disk_usage(lab.stack.data_dir(service)) if service else None


def query(lab, sql: str) -> set[str]:
    with lab.postgres() as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return {row[0] for row in cursor.fetchall() if row[0]}


def log_bytes(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    mlflow.log_artifact(str(path))
    return path


@pytest.fixture(scope="module")
def collected(lab, mlflow_client, tmp_path_factory):
    lab.require_internals()
    client, tag, folder = mlflow_client, uuid.uuid4().hex[:6], tmp_path_factory.mktemp("gc")
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.random((40, 4)), columns=list("abcd"))
    model = LogisticRegression().fit(frame, (frame["a"] > 0.5).astype(int))
    requirements = ["scikit-learn"]  # skips MLflow's requirement inference (seconds a model)

    live = client.create_experiment(f"gc-live-{tag}")
    with mlflow.start_run(experiment_id=live, run_name="production") as production_run:
        kept_file = log_bytes(folder, "notes.bin", 1_000_000)
        production_model = mlflow.sklearn.log_model(model, name="model", pip_requirements=requirements)
    production = f"gc-production-{tag}"
    version = mlflow.register_model(production_model.model_uri, production).version
    client.transition_model_version_stage(production, version, "Production")
    # A version that downloads from its run's own folder, as MLflow 2's logged models did; its run is deleted.
    with mlflow.start_run(experiment_id=live, run_name="legacy") as legacy_run:
        mlflow.sklearn.save_model(model, str(folder / "legacy"), pip_requirements=requirements)
        mlflow.log_artifacts(str(folder / "legacy"), "model")
    legacy = f"gc-legacy-{tag}"
    client.create_registered_model(legacy)
    client.create_model_version(legacy, f"{legacy_run.info.artifact_uri}/model", legacy_run.info.run_id)
    # Deleted: a run, a logged model, and an experiment with a run and a model of its own.
    with mlflow.start_run(experiment_id=live, run_name="deleted") as deleted_run:
        log_bytes(folder, "scratch.bin", 2_000_000)
    with mlflow.start_run(experiment_id=live, run_name="its model is deleted"):
        deleted_model = mlflow.sklearn.log_model(model, name="model", pip_requirements=requirements)
    deleted_experiment = client.create_experiment(f"gc-deleted-{tag}")
    with mlflow.start_run(experiment_id=deleted_experiment, run_name="in a deleted experiment"):
        log_bytes(folder, "scratch.bin", 2_000_000)
        mlflow.sklearn.log_model(model, name="model", pip_requirements=requirements)
    # ...and a run in a team's workspace: `mlflow gc` goes through every workspace.
    team = f"gc-team-{tag}"
    cli(lab, "workspaces", "add", team)
    mlflow.set_workspace(team)
    try:
        with mlflow.start_run(experiment_id=client.create_experiment(f"gc-{tag}"), run_name="a team's") as team_run:
            log_bytes(folder, "team.bin", 1_000_000)
        client.delete_run(team_run.info.run_id)
    finally:
        mlflow.set_workspace(None)
    doomed = [
        key_of(deleted_run.info.artifact_uri),
        key_of(client.get_logged_model(deleted_model.model_id).artifact_location),
        key_of(client.get_experiment(deleted_experiment).artifact_location),
        key_of(team_run.info.artifact_uri),
    ]
    client.delete_run(deleted_run.info.run_id)
    client.delete_run(legacy_run.info.run_id)
    client.delete_logged_model(deleted_model.model_id)
    client.delete_experiment(deleted_experiment)

    predicted = mlflow.pyfunc.load_model(f"models:/{production}/Production").predict(frame)
    deleted = {key_of(uri) for uri in query(lab, DELETED_FOLDERS) if uri.startswith("mlflow-artifacts:/")}
    downloaded = {key for uri in query(lab, REGISTRY_SOURCES) if uri.startswith("mlflow-artifacts:/") for key in [key_of(uri)]}
    before, disk_before = bucket(lab), data_usage(lab)
    said = cli(lab, "gc", "--older-than", "0s")
    after, disk_after = bucket(lab), data_usage(lab)
    print(f"\n$ lab gc --older-than 0s\n{said.stdout}")  # the figures docs/operations.md quotes
    return {
        "client": client,
        "frame": frame,
        "predicted": predicted,
        "production": production,
        "legacy": (legacy, key_of(legacy_run.info.artifact_uri)),
        "live_run": (production_run.info.run_id, kept_file),
        "doomed": doomed,
        "deleted": deleted,
        "downloaded": downloaded,
        "before": before,
        "after": after,
        "disk": (disk_before, disk_after),
        "said": said.stdout,
    }


def test_the_deleted_runs_model_and_experiment_are_gone_from_the_bucket(collected):
    before, after = collected["before"], collected["after"]
    for folder in collected["doomed"]:
        assert [key for key in before if under(key, [folder])], f"nothing was under {folder} to begin with"
        assert not [key for key in after if under(key, [folder])], f"{folder} is still in the bucket"
    # The deleted experiment's logged model went too, which `mlflow gc` alone leaves behind; the
    # team's run was in its workspace's folder.
    assert [key for key in before if under(key, [collected["doomed"][2]]) and "/models/" in key]
    assert collected["doomed"][3].startswith("workspaces/gc-team-")


def test_only_what_was_deleted_went_and_every_other_object_is_byte_identical(collected):
    before, after = collected["before"], collected["after"]
    may_go = {key for key in before if under(key, collected["deleted"]) and not under(key, collected["downloaded"])}
    assert set(before) - set(after) == may_go
    assert after == {key: found for key, found in before.items() if key not in may_go}
    # ...and a live run's artifact reads back as it was logged, through the lab.
    run_id, logged = collected["live_run"]
    read = collected["client"].download_artifacts(run_id, logged.name, str(logged.parent / "read-back"))
    assert Path(read).read_bytes() == logged.read_bytes()


def test_the_production_model_still_loads_and_predicts_the_same(collected):
    model = mlflow.pyfunc.load_model(f"models:/{collected['production']}/Production")
    np.testing.assert_array_equal(np.asarray(model.predict(collected["frame"])), np.asarray(collected["predicted"]))


def test_a_version_that_downloads_from_a_deleted_runs_folder_is_kept(collected):
    name, run_folder = collected["legacy"]
    assert [key for key in collected["after"] if under(key, [run_folder])], "the version's files were deleted"
    assert "gc: kept " in collected["said"]
    assert len(mlflow.pyfunc.load_model(f"models:/{name}/1").predict(collected["frame"])) == len(collected["frame"])


def test_the_bucket_takes_less_space_and_the_report_says_so(lab, collected):
    before, after = collected["before"], collected["after"]
    removed = sum(size for key, (size, _) in before.items() if key not in after)
    assert removed > 4_000_000  # the two 2 MB files and the models
    assert sum(size for size, _ in after.values()) == sum(size for size, _ in before.values()) - removed
    figures = re.search(r"in (\d+) objects? before, [\d.]+ MB in (\d+) objects? after$", collected["said"].strip())
    assert figures and (int(figures[1]), int(figures[2])) == (len(before), len(after)), collected["said"]
    # On the disk: MinIO frees the space at once, SeaweedFS when it compacts its volumes.
    disk_before, disk_after_gc = collected["disk"]
    if disk_before is None:
        pytest.skip("the S3 server is not the lab's: its disk is not measured here")
    if s3_service(lab) == "s3":
        vacuum(lab)
    deadline, now = time.monotonic() + 20, data_usage(lab)
    while now >= disk_before - removed // 2 and time.monotonic() < deadline:  # the volumes are rewritten meanwhile
        time.sleep(0.5)
        now = data_usage(lab)
    print(f"\nS3 data on disk: {disk_before / 1e6:.2f} MB, {disk_after_gc / 1e6:.2f} MB after gc, {now / 1e6:.2f} MB compacted")
    assert now < disk_before - removed // 2


# compose.yaml's `gc` service (profile ops), in the tracking server's environment: started, left
# until its health check passes (its first collection succeeded), then stopped as Compose stops it.
SCHEDULED = """
export TMPDIR="$(mktemp -d)"
python -m mlflow_lab.gc --schedule & collector=$!
tries=0
until python -m mlflow_lab.gc --healthy || [ $tries -ge 120 ]; do sleep 0.5; tries=$((tries + 1)); done
python -m mlflow_lab.gc --healthy; healthy=$?
kill -TERM $collector; wait $collector; stopped=$?
rm -rf "$TMPDIR"
echo "healthy=$healthy stopped=$stopped"
"""


def test_the_scheduled_collector_reports_becomes_healthy_and_stops_on_sigterm(lab, collected):
    result = lab.require_internals().exec("mlflow", ["sh", "-c", SCHEDULED])
    assert result.stdout.strip().endswith("healthy=0 stopped=0"), result.stdout + result.stderr
    assert "gc: mlflow gc --older-than 30d, every workspace" in result.stdout  # LAB_GC_OLDER_THAN's default
    assert "gc: bucket " in result.stdout and "gc: next collection at " in result.stdout


def test_a_duration_it_cannot_read_is_refused_in_one_sentence(lab):
    result = cli(lab, "gc", "--older-than", "banana", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "error: --older-than must be a duration such as 30d, 12h, 1d2h30m or 0s; got 'banana'.\n"
