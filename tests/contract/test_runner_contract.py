"""What each runner must do the same way, checked on every runner: the commands a user runs
(`status`, `logs`, `down`, `up`, `lab job ...`), a round trip through nginx into both stores,
and data kept across `down` and `up`. Supervision, secrets, restarts, backup and restore and
the model API's promotions have their contract tests beside the behaviour they check."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from mlflow_lab.native import declaration
from mlflow_lab.testing.stacks import lab_cli
from tests.stack.payloads import v2_body
from tests.stack.people import MEMBER_MODEL, Person, add, unique, users

pytestmark = [pytest.mark.stack, pytest.mark.contract]
FIVE_MB = 5 * 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def logged(mlflow_client, tmp_path: Path, size: int) -> dict:
    """A run with a metric and an artifact of `size` random bytes, and a registered model version of it."""
    name = f"contract-{uuid.uuid4().hex[:6]}"
    run = mlflow_client.create_run(mlflow_client.create_experiment(name)).info
    payload = os.urandom(size)
    (tmp_path / "payload.bin").write_bytes(payload)
    mlflow_client.log_artifact(run.run_id, str(tmp_path / "payload.bin"))
    mlflow_client.log_metric(run.run_id, "loss", 0.25)
    mlflow_client.create_registered_model(name)
    mlflow_client.create_model_version(name, f"{run.artifact_uri}/payload.bin", run.run_id)
    return {"name": name, "run": run, "sha256": sha256(payload)}


def assert_still_there(mlflow_client, tmp_path: Path, kept: dict) -> None:
    run_id = kept["run"].run_id
    assert mlflow_client.get_run(run_id).data.metrics == {"loss": 0.25}
    assert [v.version for v in mlflow_client.search_model_versions(f"name='{kept['name']}'")] == ["1"]
    downloaded = mlflow_client.download_artifacts(run_id, "payload.bin", str(tmp_path / f"dl-{uuid.uuid4().hex}"))
    assert sha256(Path(downloaded).read_bytes()) == kept["sha256"]


def test_status_names_every_service_healthy_and_logs_show_each(lab):
    lab.require_internals()
    services = declaration.services(lab.settings.as_env(), lab.stack.profiles())
    status = lab_cli(lab.cli_env, "status").stdout.splitlines()
    for name, service in services.items():
        if name == "init":  # one-shot: done before the others started
            continue
        # natively `<service> healthy`; under Compose `<project>-<service>-1 ... Up ... (healthy)`,
        # or only `Up` for a service without a health check of its own (the monitoring exporters)
        line = next((line for line in status if re.match(rf"(\S+-)?{re.escape(name)}(-\d+)?\s", line)), "")
        expected = "healthy" if service.healthcheck else "Up"
        assert expected in line and "unhealthy" not in line, (name, status)
    assert lab_cli(lab.cli_env, "logs", "mlflow").stdout.strip(), "the tracking server's log is empty"


def test_a_run_metric_and_5_mb_artifact_round_trip_through_nginx_into_both_stores(lab, mlflow_client, tmp_path):
    kept = logged(mlflow_client, tmp_path, FIVE_MB)
    assert_still_there(mlflow_client, tmp_path, kept)
    key = kept["run"].artifact_uri.split("mlflow-artifacts:/", 1)[1] + "/payload.bin"
    stored = lab.s3().get_object(Bucket=lab.settings["S3_BUCKET"], Key=key)["Body"].read()
    assert sha256(stored) == kept["sha256"], "the bucket holds the bytes the client sent"
    with lab.postgres() as db, db.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (kept["run"].run_id,))
        assert cursor.fetchone() == ("RUNNING",)


def test_a_member_trains_promotes_scores_and_predicts_with_its_own_model(lab, data_dir):
    """`make train promote score` call `lab job ...` as the caller's account: natively `lab-job`
    runs here, under Compose train, promote and score are job containers, run as the invoking
    user, that reach MLflow through nginx and write into ./data. A member does the whole
    workflow on a model of its own, which the model API then serves to it; a model the admin
    owns it cannot promote."""
    lab.require_internals()
    name = unique("member")
    member = Person(lab, name, add(lab, name)[name])
    as_member = {**lab.cli_env, "MLFLOW_TRACKING_USERNAME": member.name, "MLFLOW_TRACKING_PASSWORD": member.password}
    sample = Path("data") / f"psystock-sample-{uuid.uuid4().hex[:6]}.csv"
    scored_path = data_dir / sample.with_name(sample.stem + ".predictions.csv")

    def job(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mlflow_lab.cli", "job", *args],
            capture_output=True,
            text=True,
            env=as_member,
            cwd=data_dir,
            timeout=600,
        )

    try:
        for args in (
            [
                "train",
                "psystock",
                "--experiment",
                MEMBER_MODEL,
                "--register-as",
                MEMBER_MODEL,
                "--days",
                "300",
                "--n-estimators",
                "5",
            ],
            ["promote", MEMBER_MODEL],
            ["sample-input", "psystock", str(sample), "--rows", "40"],
            ["score", str(sample), "--model-uri", f"models:/{MEMBER_MODEL}/Production"],
        ):
            result = job(*args)
            assert result.returncode == 0, result.stdout + result.stderr
        scored = pd.read_csv(scored_path)
        assert len(scored) == 40 and {"probability", "decision"} <= set(scored.columns)
        assert f"models:/{MEMBER_MODEL}/1" in result.stdout and "(run " in result.stdout
        assert scored_path.stat().st_uid == os.getuid(), "the output belongs to the user who ran the job"
        runs = member.api("POST", "runs/search", {"experiment_ids": [experiment_id(member, MEMBER_MODEL)]}).json()["runs"]
        assert {run["info"]["user_id"] for run in runs} == {member.name}

        rows = pd.read_csv(data_dir / sample).head(3)
        for path, body in (
            (f"/v2/models/{MEMBER_MODEL}/infer", v2_body(rows)),
            (f"/models/{MEMBER_MODEL}/invocations", {"dataframe_split": rows.to_dict(orient="split", index=False)}),
        ):
            answered = wait_for(lambda path=path, body=body: member.call("POST", path, json=body), seconds=90)
            assert answered.status_code == 200, answered.text[:300]

        shared = unique("shared")
        admin = Person(lab, lab.user, lab.password)
        admin.api("POST", "registered-models/create", {"name": shared}).raise_for_status()
        version = admin.api(
            "POST",
            "model-versions/create",
            {"name": shared, "source": runs[0]["info"]["artifact_uri"], "run_id": runs[0]["info"]["run_id"]},
        )
        version.raise_for_status()
        refused = job("promote", shared, "--force")
        assert refused.returncode != 0 and "PERMISSION_DENIED" in refused.stdout + refused.stderr
        stage = admin.api("GET", "model-versions/get", {"name": shared, "version": "1"}).json()["model_version"]["current_stage"]
        assert stage == "None"
    finally:
        for path in (data_dir / sample, scored_path):
            path.unlink(missing_ok=True)
        users(lab, "remove", name, check=False)


def experiment_id(person: Person, name: str) -> str:
    return person.api("GET", "experiments/get-by-name", {"experiment_name": name}).json()["experiment"]["experiment_id"]


def wait_for(request, seconds: float):
    """The model API serves a newly promoted version within its poll interval plus a load."""
    deadline = time.monotonic() + seconds
    while (response := request()).status_code != 200 and time.monotonic() < deadline:
        time.sleep(1)
    return response


def test_down_then_up_keeps_every_run_model_and_artifact_and_passes_init_again(lab, mlflow_client, tmp_path):
    lab.require_internals()
    kept = logged(mlflow_client, tmp_path, 100_000)
    lab_cli(lab.cli_env, "down")
    assert lab.stack.main_pid("mlflow") == 0, "the tracking server still runs after `down`"
    up = lab_cli(lab.cli_env, "up")
    assert "MLflow is up at" in up.stdout
    init = lab.log_tail("init", 10)
    assert "backend store schema is current" in init and f"bucket {lab.settings['S3_BUCKET']} exists" in init
    assert_still_there(mlflow_client, tmp_path, kept)


@pytest.mark.contract("native")
def test_a_lab_in_a_0700_directory_keeps_its_unprivileged_services_files_outside_it(lab):
    """The session's native lab keeps its state in a private directory, as a checkout under
    `mktemp -d` or a 0700 home does (CI runs from such a clone): run as root, PostgreSQL and
    nginx run unprivileged and could not reach into it, so their files live elsewhere."""
    stack = lab.require("native")
    if os.geteuid() != 0:
        pytest.skip("only a root user runs PostgreSQL and nginx unprivileged")
    assert stat.S_IMODE(stack.state.parent.stat().st_mode) == 0o700
    assert not stack.private.is_relative_to(stack.state.parent)
    assert (stack.private / "postgres" / "PG_VERSION").exists() and (stack.state / "logs" / "mlflow.log").exists()
