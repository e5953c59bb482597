"""Nothing logged is lost when the tracking server and PostgreSQL restart."""

import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.contract]


def test_data_survives_restart(lab, mlflow_client, tmp_path):
    lab.require_internals()
    experiment_id = mlflow_client.create_experiment(f"test-restart-{uuid.uuid4().hex[:8]}")
    run_id = mlflow_client.create_run(experiment_id).info.run_id
    mlflow_client.log_metric(run_id, "accuracy", 0.93)
    (tmp_path / "notes.txt").write_text("kept across restarts\n")
    mlflow_client.log_artifact(run_id, str(tmp_path / "notes.txt"))

    lab.restart("postgres", "mlflow")

    run = mlflow_client.get_run(run_id)
    assert run.data.metrics == {"accuracy": 0.93}
    assert mlflow_client.get_experiment(experiment_id).name.startswith("test-restart-")
    path = mlflow_client.download_artifacts(run_id, "notes.txt", str(tmp_path / "dl"))
    assert Path(path).read_text() == "kept across restarts\n"
