"""Train -> register -> promote against the lab, as the tutorials do it."""

import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest

from mlflow_lab.jobs import promote as promote_job
from mlflow_lab.jobs import train_wine
from mlflow_lab.settings import REPO_ROOT

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def trained(mlflow_client):
    """Both wine-quality runs, registered under a name unique to this test session."""
    name = f"wine-quality-{uuid.uuid4().hex[:6]}"
    results = train_wine.train(experiment=name, register_as=name, n_iter=6)
    return name, results, mlflow_client


def test_training_registers_both_versions_with_metrics_and_plots(trained):
    name, results, client = trained
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    assert versions == [1, 2]
    for run_name, (run_id, metrics) in results.items():
        run = client.get_run(run_id)
        assert run.info.run_name == run_name
        assert {"test_rmse", "test_mae", "test_r2"} <= set(run.data.metrics)
        assert run.data.metrics["test_rmse"] == pytest.approx(metrics["test_rmse"])
        assert "plots/predicted_vs_actual.png" in {a.path for a in client.list_artifacts(run_id, "plots")}
    default_run = client.get_run(results["default-params"][0])
    assert default_run.data.params["alpha"] == "1.0"  # autologged estimator params


def test_tuning_parent_has_child_runs(trained):
    _, results, client = trained
    parent_id = results["hyperparameter-tuning"][0]
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert 1 <= len(children) <= 5
    assert all("alpha" in child.data.params and "l1_ratio" in child.data.params for child in children)


def test_promotion_gate_stage_alias_and_idempotence(lab, trained):
    name, results, client = trained
    first = promote_job.promote(client, name, "1", "test_rmse")
    assert first.promoted and "no version in Production" in first.reason
    tuned_is_better = results["hyperparameter-tuning"][1]["test_rmse"] < results["default-params"][1]["test_rmse"]
    assert tuned_is_better
    second = promote_job.promote(client, name, "2", "test_rmse")
    assert second.promoted and second.champion_version == "1"
    assert client.get_model_version(name, "2").tags["promotion.decision"] == "promoted"
    assert client.get_model_version(name, "1").current_stage == "Archived"

    # Both addressing schemes resolve to the promoted version and predict alike.
    by_stage = mlflow.pyfunc.load_model(f"models:/{name}/Production")
    by_alias = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert by_stage.metadata.run_id == by_alias.metadata.run_id == results["hyperparameter-tuning"][0]
    sample = train_wine.load_data(42)[1].head(20)
    assert (by_stage.predict(sample) == by_alias.predict(sample)).all()

    again = promote_job.promote(client, name, "2", "test_rmse")
    assert not again.promoted and "already in Production" in again.reason

    refused = promote_job.promote(client, name, "1", "test_rmse")
    assert not refused.promoted and refused.reason.startswith("refused")
    assert client.get_model_version(name, "1").tags["promotion.decision"] == "refused"
    assert client.get_registered_model(name).aliases == {"champion": "2"}


def test_promote_cli_names_a_missing_model(lab):
    result = subprocess.run([sys.executable, "-m", "mlflow_lab.jobs", "promote", "no-such-model", "--tracking-uri", lab.url],
                            capture_output=True, text=True,
                            env={"MLFLOW_TRACKING_USERNAME": lab.user, "MLFLOW_TRACKING_PASSWORD": lab.password,
                                 "PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert f"no version of model 'no-such-model' is registered at {lab.url}" in result.stderr
    assert "Traceback" not in result.stderr


def test_force_overrides_the_gate(lab, trained):
    name, _, client = trained
    promote_job.promote(client, name, "2", "test_rmse")  # whatever ran before: v2 is champion
    forced = promote_job.promote(client, name, "1", "test_rmse", force=True)
    assert forced.promoted and forced.reason.startswith("forced")
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    assert mlflow.pyfunc.load_model(f"models:/{name}/Production").metadata.run_id == \
        client.get_model_version(name, "1").run_id


def test_mlproject_entry_point_runs_against_the_lab(lab, tmp_path):
    """`mlflow run . -e train_psystock -P ...` as the tutorials do it (local env manager: this venv)."""
    name = f"psystock-mlproject-{uuid.uuid4().hex[:6]}"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), **lab.client_env()}
    result = subprocess.run([str(Path(sys.executable).parent / "mlflow"), "run", str(REPO_ROOT), "-e", "train_psystock",
                             "-P", "days=400", "-P", "n_estimators=10", "-P", f"register_as={name}",
                             "--experiment-name", name, "--env-manager", "local"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    client = mlflow.MlflowClient(lab.url)
    [version] = client.search_model_versions(f"name='{name}'")
    run = client.get_run(version.run_id)
    assert run.data.params["n_estimators"] == "10" and run.data.params["days"] == "400"
    assert "test_auc" in run.data.metrics
