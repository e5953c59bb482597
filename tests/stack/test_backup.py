"""Backup and restore, the way a team uses it: train, promote and score; `lab backup`;
`lab clean`; `lab up`; `lab restore` into the empty lab; then everything is back. Bad
archives and a lab that holds runs are refused in one sentence and change nothing.

These tests replace the whole lab, so they run last on each runner's stack (conftest)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import ViewType

from mlflow_lab.jobs import promote, sample_input, train_wine
from mlflow_lab.settings import PASSWORD_VARS
from mlflow_lab.testing.ports import free_ports
from mlflow_lab.testing.stacks import lab_cli
from tests.stack.people import Person, add, unique, users
from tests.stack.test_batch_scoring import run_job

pytestmark = [pytest.mark.stack, pytest.mark.replaces_lab]


def lab_state(lab, client) -> dict:
    """Everything a user would miss after a restore, read through the APIs, plus every
    object of the bucket read straight from the S3 server (not through the lab's code)."""
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = mlflow.search_runs(search_all_experiments=True, run_view_type=ViewType.ALL, output_format="list")
    histories = {
        (run.info.run_id, key): [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        for run in runs
        for key in run.data.metrics
    }
    versions = {
        (v.name, v.version): (v.current_stage, v.source, v.run_id, v.status, sorted(v.aliases), v.tags)
        for model in client.search_registered_models()
        for v in client.search_model_versions(f"name = '{model.name}'")
    }
    return {
        "experiments": sorted((e.experiment_id, e.name, e.lifecycle_stage, e.artifact_location) for e in experiments),
        "runs": {run.info.run_id: unordered_inputs(run.to_dictionary()) for run in runs},
        "histories": histories,
        "models": {m.name: (sorted(m.aliases.items()), m.tags) for m in client.search_registered_models()},
        "versions": versions,
        "objects": bucket_objects(lab),
    }


def unordered_inputs(run: dict) -> dict:
    """MLflow returns a run's dataset inputs in no particular order (its query has no ORDER BY)."""
    for kind, inputs in run.get("inputs", {}).items():
        run["inputs"][kind] = sorted(inputs, key=lambda item: json.dumps(item, sort_keys=True))
    return run


def bucket_objects(lab) -> dict[str, str]:
    s3, bucket, found = lab.s3(), lab.settings["S3_BUCKET"], {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"]
            found[item["Key"]] = hashlib.file_digest(body, "sha256").hexdigest()
    return found


def differences(before, after, where: str = "") -> list[str]:
    """Where two nested structures differ, as readable paths (pytest's diff truncates them)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = [f"{where}/{key}: only {'before' if key in before else 'after'}" for key in before.keys() ^ after.keys()]
        for key in before.keys() & after.keys():
            found += differences(before[key], after[key], f"{where}/{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (b, a) in enumerate(zip(before, after, strict=True)) for d in differences(b, a, f"{where}[{i}]")]
    return [] if before == after else [f"{where}: {before!r} != {after!r}"]


def lab_command(lab, *args: str, check: bool = True):
    return lab_cli(lab.cli_env, *args, check=check)


@pytest.fixture(scope="module")
def restored(lab, mlflow_client, tmp_path_factory):
    lab.require_internals()  # it cleans the lab: only a stack the tests started
    name = f"wine-quality-{uuid.uuid4().hex[:6]}"
    train_wine.train(experiment=name, register_as=name, n_iter=3)  # a tuning run with child runs
    promote.promote(mlflow_client, name, "2")  # the tuned version
    folder = tmp_path_factory.mktemp("backup")
    source = sample_input.write("wine-quality", folder / "wine.csv", rows=50)
    assert run_job(lab, "score", str(source), "--model-uri", f"models:/{name}/Production").returncode == 0
    frame = pd.read_csv(source)
    predicted = mlflow.pyfunc.load_model(f"models:/{name}/Production").predict(frame)
    before = lab_state(lab, mlflow_client)
    keeper = unique("keeper")
    password = add(lab, keeper, role="viewer")[keeper]

    made = lab_command(lab, "backup", "--dir", str(folder / "archives"))
    archive = Path(made.stdout.strip())
    lab_command(lab, "clean", "--force")
    lab_command(lab, "up")
    emptied = lab_state(lab, mlflow_client)
    accounts_emptied = users(lab, "list").stdout
    restore = lab_command(lab, "restore", str(archive))
    return {
        "keeper": Person(lab, keeper, password),
        "accounts": (accounts_emptied, users(lab, "list").stdout),
        "name": name,
        "frame": frame,
        "predicted": np.asarray(predicted),
        "before": before,
        "emptied": emptied,
        "after": lab_state(lab, mlflow_client),
        "archive": archive,
        "backup_said": made.stderr,
        "restore_said": restore.stderr,
    }


@pytest.mark.contract  # backup and restore on the same runner
def test_clean_left_an_empty_lab_to_restore_into(restored):
    emptied = restored["emptied"]
    assert not emptied["runs"] and not emptied["models"] and not emptied["objects"]
    assert [name for _, name, _, _ in emptied["experiments"]] == ["Default"]


@pytest.mark.contract  # backup and restore on the same runner
def test_every_run_history_model_stage_alias_and_object_is_back(restored):
    before, after = restored["before"], restored["after"]
    assert before["runs"] and before["objects"] and restored["name"] in before["models"]
    # Runs: info, params, metrics, tags, inputs and outputs. Objects: every key, byte-identical.
    assert not differences(before, after)


@pytest.mark.contract  # backup and restore on the same runner
def test_the_production_model_predicts_the_same_after_restore(restored):
    again = mlflow.pyfunc.load_model(f"models:/{restored['name']}/Production").predict(restored["frame"])
    np.testing.assert_array_equal(np.asarray(again), restored["predicted"])
    assert mlflow.MlflowClient().get_model_version_by_alias(restored["name"], "champion").version == "2"


@pytest.mark.contract  # backup and restore on the same runner
def test_the_archive_has_a_manifest_and_no_secrets(lab, restored):
    archive = restored["archive"]
    assert archive.name.startswith("mlflow-lab-") and archive.suffix == ".tar"
    assert archive.stat().st_mode & 0o077 == 0  # the lab's data: readable by its owner only
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["mlflow_version"] == mlflow.__version__
    assert manifest["rows"]["runs"] == len(restored["before"]["runs"])
    assert manifest["object_count"] == len(restored["before"]["objects"])
    assert {entry["name"].removeprefix("artifacts/") for entry in manifest["objects"]} == set(restored["before"]["objects"])
    data = archive.read_bytes()
    for secret in PASSWORD_VARS:
        assert lab.settings[secret].encode() not in data, f"{secret} is in the archive"
    assert restored["keeper"].password.encode() not in data, "an account's password is in the archive"
    assert f"{manifest['object_count']} objects" in restored["backup_said"]
    assert "keep .env separately" in restored["backup_said"]


@pytest.mark.contract  # backup and restore on the same runner
def test_accounts_and_their_roles_come_back_with_their_passwords(restored):
    emptied, after = restored["accounts"]
    keeper = restored["keeper"]
    assert keeper.name not in emptied, "clean removed the account"
    assert f"{keeper.name}  viewer" in after.splitlines()
    assert keeper.api("GET", "users/current").json()["user"]["username"] == keeper.name
    assert keeper.api("POST", "experiments/create", {"name": unique("viewer-after-restore")}).status_code == 403


def refused(lab, archive: Path, *extra: str, env: dict | None = None) -> str:
    """Restore must fail with one sentence and leave the lab exactly as it was."""
    runs_before = len(mlflow.search_runs(search_all_experiments=True, output_format="list"))
    result = lab_cli({**lab.cli_env, **(env or {})}, "restore", str(archive), *extra, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error: ") and len(message.splitlines()) == 1, message
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == runs_before
    return message


def test_a_lab_that_holds_runs_is_not_replaced_without_force(lab, restored):
    message = refused(lab, restored["archive"])
    assert "already holds" in message and "FORCE=1" in message


def rewritten(source: Path, target: Path, change) -> Path:
    """A copy of the archive with `change(name, data) -> data` applied to each member."""
    with tarfile.open(source) as tar, tarfile.open(target, "w") as out:
        for member in tar.getmembers():
            data = change(member.name, tar.extractfile(member).read())
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    return target


def test_tampered_truncated_foreign_and_newer_archives_are_refused(lab, restored, tmp_path):
    archive = restored["archive"]

    def flip_a_byte(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if name.endswith("MLmodel") else data

    tampered = rewritten(archive, tmp_path / "tampered.tar", flip_a_byte)
    assert "does not match the sha256" in refused(lab, tampered, "--force")

    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    assert "truncated" in refused(lab, truncated, "--force")

    foreign = tmp_path / "notes.txt"
    foreign.write_text("not an archive\n")
    assert "not a readable mlflow-lab backup" in refused(lab, foreign, "--force")
    assert "does not exist" in refused(lab, tmp_path / "missing.tar", "--force")

    def from_the_future(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest.update(schema_revision="f00dfeedbeef", mlflow_version="9.0.0")
        return json.dumps(manifest).encode()

    newer = rewritten(archive, tmp_path / "newer.tar", from_the_future)
    assert "newer MLflow (9.0.0" in refused(lab, newer, "--force")


def test_a_lab_that_is_down_is_refused(lab, restored):
    nobody = free_ports(1)[0]  # the lab's settings, but no lab listens there
    message = refused(lab, restored["archive"], "--force", env={"LAB_HTTP_PORT": str(nobody)})
    assert "does not answer" in message and "make up" in message


def test_force_replaces_a_lab_saying_what_it_deletes(lab, mlflow_client, restored):
    extra = mlflow_client.create_experiment(f"made-after-the-backup-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run(experiment_id=extra):
        mlflow.log_text("gone after the restore", "note.txt")
    result = lab_command(lab, "restore", str(restored["archive"]), "--force")
    assert "replacing the lab's" in result.stderr and "deleting 1 artifact object(s)" in result.stderr
    assert lab_state(lab, mlflow_client) == restored["after"]


# Onto the native lab: the MLflow 2 lab is made natively, beside the upgrade tests that share it
# (one worker, made once); restore is the same code under both runners.
@pytest.mark.contract("native")
def test_an_archive_of_an_mlflow2_lab_is_restored_and_its_schema_upgraded(lab, mlflow_client, mlflow2_lab):
    """The restore path of an upgrade, under either runner: the archive of a lab that MLflow
    2.x wrote (tests/upgrade/harness.py) onto this lab, then `mlflow db upgrade` by init."""
    _, old, _, archive = mlflow2_lab
    result = lab_command(lab, "restore", str(archive), "--force")
    assert f"(MLflow {old['mlflow']}) (schema upgraded to " in result.stderr, result.stderr
    run = mlflow_client.get_run(old["run_id"])
    assert run.info.run_name == "trained-by-mlflow-2" and run.data.params["alpha"] == "0.01"
    assert [m.value for m in sorted(mlflow_client.get_metric_history(old["run_id"], "loss"), key=lambda m: m.step)] == old["loss"]
    name = "wine-quality"
    assert mlflow_client.get_model_version(name, "1").current_stage == "Production"
    sample = pd.DataFrame(old["sample"]["data"], columns=old["sample"]["columns"])
    predicted = mlflow.pyfunc.load_model(f"models:/{name}/Production").predict(sample)
    np.testing.assert_allclose(np.asarray(predicted), old["predictions"], rtol=1e-12)
    with mlflow.start_run(experiment_id=run.info.experiment_id):  # and the lab takes new writes
        mlflow.log_metric("after_restore", 1.0)
