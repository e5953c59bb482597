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
import uuid
from pathlib import Path

import pandas as pd
import pytest

from mlflow_lab.native import declaration
from mlflow_lab.testing.stacks import lab_cli

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
    services = [name for name in declaration.services(lab.settings.as_env(), lab.stack.profiles())]
    status = lab_cli(lab.cli_env, "status").stdout.splitlines()
    for name in services:
        if name == "init":  # one-shot: done before the others started
            continue
        # natively `<service> healthy`; under Compose `<project>-<service>-1 ... Up ... (healthy)`
        line = next((line for line in status if re.match(rf"(\S+-)?{re.escape(name)}(-\d+)?\s", line)), "")
        assert "healthy" in line and "unhealthy" not in line, (name, status)
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


def test_make_train_promote_score_run_the_jobs_with_the_lab_credentials(lab, data_dir):
    """`make train promote score` call `lab job ...`: natively they run `lab-job` with `lab env`;
    under Compose train, promote and score are job containers, run as the invoking user, that
    reach MLflow through nginx and write into ./data."""
    lab.require_internals()
    name = f"psystock-jobs-{uuid.uuid4().hex[:6]}"
    sample = Path("data") / f"psystock-sample-{uuid.uuid4().hex[:6]}.csv"
    scored_path = data_dir / sample.with_name(sample.stem + ".predictions.csv")
    try:
        for args in (
            ["train", "psystock", "--experiment", name, "--register-as", name, "--days", "300", "--n-estimators", "5"],
            ["promote", name],
            ["sample-input", "psystock", str(sample), "--rows", "40"],
            ["score", str(sample), "--model-uri", f"models:/{name}/Production"],
        ):
            result = subprocess.run(
                [sys.executable, "-m", "mlflow_lab.cli", "job", *args],
                capture_output=True,
                text=True,
                env=lab.cli_env,
                cwd=data_dir,
                timeout=600,
            )
            assert result.returncode == 0, result.stdout + result.stderr
        scored = pd.read_csv(scored_path)
        assert len(scored) == 40 and {"probability", "decision"} <= set(scored.columns)
        assert f"models:/{name}/1" in result.stdout and "(run " in result.stdout
        assert scored_path.stat().st_uid == os.getuid(), "the output belongs to the user who ran the job"
    finally:
        for path in (data_dir / sample, scored_path):
            path.unlink(missing_ok=True)


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
