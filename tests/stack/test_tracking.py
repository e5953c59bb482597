"""A user's MLflow client against the lab: what it logs is what it reads back, and the
data really is in PostgreSQL and in the bucket."""

import hashlib
import os
import uuid

import pytest

pytestmark = pytest.mark.stack


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def logged_run(mlflow_client, tmp_path):
    experiment_id = mlflow_client.create_experiment(f"test-tracking-{uuid.uuid4().hex[:8]}")
    run = mlflow_client.create_run(experiment_id, run_name="round-trip")
    run_id = run.info.run_id
    mlflow_client.log_param(run_id, "alpha", "0.5")
    for step, value in enumerate([0.9, 0.7, 0.4]):
        mlflow_client.log_metric(run_id, "rmse", value, step=step)
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(os.urandom(300_000))
    mlflow_client.log_artifact(run_id, str(artifact), artifact_path="model")
    mlflow_client.set_terminated(run_id)
    return experiment_id, run_id, artifact


def test_run_reads_back(mlflow_client, logged_run):
    _, run_id, _ = logged_run
    run = mlflow_client.get_run(run_id)
    assert run.data.params == {"alpha": "0.5"}
    assert run.data.metrics == {"rmse": 0.4}
    assert [m.value for m in mlflow_client.get_metric_history(run_id, "rmse")] == [0.9, 0.7, 0.4]
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), "clients must not need S3 access"


def test_clients_are_never_sent_to_the_bucket(lab):
    """MLflow 3.17 offers presigned S3 transfers; through the lab every transfer goes via nginx."""
    info = lab.session().get(f"{lab.url}/api/3.0/mlflow/server-info", timeout=10).json()
    assert info["store_type"] == "SqlStore"
    assert info["multipart_downloads_enabled"] is False and info["multipart_uploads_enabled"] is False


def test_artifact_is_byte_identical(mlflow_client, logged_run, tmp_path):
    _, run_id, artifact = logged_run
    downloaded = mlflow_client.download_artifacts(run_id, "model/weights.bin", str(tmp_path / "dl"))
    assert sha256(downloaded) == sha256(artifact)


def test_artifact_is_in_the_bucket(lab, mlflow_client, logged_run):
    lab.require_internals()
    experiment_id, run_id, artifact = logged_run
    client, bucket = lab.s3(), lab.settings["S3_BUCKET"]
    # mlflow-artifacts:/<path> lies at s3://<bucket>/<path>; workspaces put it under workspaces/<name>/
    location = mlflow_client.get_run(run_id).info.artifact_uri.removeprefix("mlflow-artifacts:/")
    assert location == f"workspaces/default/{experiment_id}/{run_id}/artifacts"
    keys = [obj["Key"] for obj in client.list_objects_v2(Bucket=bucket, Prefix=location + "/")["Contents"]]
    key = next(k for k in keys if k.endswith("artifacts/model/weights.bin"))
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256(artifact)


def test_run_is_in_postgres(lab, logged_run):
    lab.require_internals()
    _, run_id, _ = logged_run
    with lab.postgres() as conn, conn.cursor() as cur:
        cur.execute("SELECT name, status FROM runs WHERE run_uuid = %s", (run_id,))
        assert cur.fetchone() == ("round-trip", "FINISHED")
        cur.execute("SELECT key, value FROM params WHERE run_uuid = %s", (run_id,))
        assert cur.fetchall() == [("alpha", "0.5")]
        cur.execute("SELECT count(*) FROM metrics WHERE run_uuid = %s AND key = 'rmse'", (run_id,))
        assert cur.fetchone() == (3,)
