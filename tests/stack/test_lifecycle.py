"""Train -> register -> promote against the lab, as the tutorials do it."""

import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from mlflow_lab.jobs import promote as promote_job
from mlflow_lab.jobs import sample_input, train_wine
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


def promote_cli(lab, *args: str) -> subprocess.CompletedProcess:
    """`lab-job promote ...`, as `make promote` runs it natively."""
    return subprocess.run(
        [sys.executable, "-m", "mlflow_lab.jobs", "promote", *args, "--tracking-uri", lab.url],
        capture_output=True,
        text=True,
        env={"MLFLOW_TRACKING_USERNAME": lab.user, "MLFLOW_TRACKING_PASSWORD": lab.password, "PATH": "/usr/bin:/bin"},
    )


def register_without_metrics(name: str) -> str:
    """A version registered the tutorials' way: a logged model, a plain register call, no metric on its run."""
    from sklearn.linear_model import LinearRegression

    features, _, target, _ = train_wine.load_data(42)
    with mlflow.start_run(experiment_id=mlflow.set_experiment(name).experiment_id):
        info = mlflow.sklearn.log_model(LinearRegression().fit(features, target), name="model")
    return mlflow.register_model(info.model_uri, name).version


def test_promote_cli_names_a_missing_model_and_still_decides_the_next(lab, trained):
    name, _, _ = trained
    result = promote_cli(lab, "no-such-model", name)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no version of model 'no-such-model' is registered at {lab.url}."
    assert result.stdout.startswith(f"{name} v2: ")  # the second model was still decided


def test_a_refusal_exits_0_reports_and_carries_on_strict_exits_2(lab, trained):
    name, _, client = trained
    promote_job.promote(client, name, "2", "test_rmse")  # whatever ran before: v2 is champion
    refused = promote_cli(lab, name, "--version", "1")
    assert refused.returncode == 0, refused.stderr
    assert refused.stdout.startswith(f"{name} v1: unchanged (refused: test_rmse ")
    assert promote_cli(lab, name, "--version", "1", "--strict").returncode == 2
    assert client.get_registered_model(name).aliases == {"champion": "2"}


def test_a_version_without_the_metric_is_refused_in_one_sentence_unless_forced(lab, trained):
    name, _, client = trained
    promote_job.promote(client, name, "2", "test_rmse")
    plain = register_without_metrics(name)
    other = f"plain-{uuid.uuid4().hex[:6]}"
    register_without_metrics(other)

    result = promote_cli(lab, name, other)  # the first is refused, the second still promoted
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{name} v{plain}: unchanged (refused: version {plain} has no metric test_rmse on its run; --force promotes it anyway)",
        f"{other} v1: promoted (no version in Production yet)",
    ]
    assert client.get_registered_model(other).aliases == {"champion": "1"}

    forced = promote_cli(lab, name, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"{name} v{plain}: promoted (forced: version {plain} has no metric test_rmse on its run)" in forced.stdout
    assert client.get_registered_model(name).aliases == {"champion": plain}
    # The measured versions are now refused against it, not crashed on.
    against = promote_cli(lab, name, "--version", "2")
    assert f"refused: version {plain} in Production has no metric test_rmse to compare with" in against.stdout
    promote_job.promote(client, name, "2", "test_rmse", force=True)  # leave a measured champion for the next test


def test_force_overrides_the_gate(lab, trained):
    name, _, client = trained
    promote_job.promote(client, name, "2", "test_rmse")  # whatever ran before: v2 is champion
    forced = promote_job.promote(client, name, "1", "test_rmse", force=True)
    assert forced.promoted and forced.reason.startswith("forced")
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    assert mlflow.pyfunc.load_model(f"models:/{name}/Production").metadata.run_id == client.get_model_version(name, "1").run_id


# The page that shows users the `mlflow run` / `mlflow models` commands.
MLFLOW_COMMANDS_DOC = REPO_ROOT / "docs" / "lifecycle.md"


def documented_mlflow_commands() -> list[str]:
    """The `mlflow ...` lines of that page, as a user would paste them."""
    text = MLFLOW_COMMANDS_DOC.read_text()
    return [line.split("  #")[0].strip() for line in text.splitlines() if line.startswith(("mlflow run ", "mlflow models "))]


def test_documented_mlflow_commands_cover_every_entry_point_and_work_as_written(lab, mlflow_client):
    """Each MLproject entry point, run the way the docs show it, then `mlflow models predict`
    on the lab's sample, from the checkout (local env manager: this venv), against the lab with
    the credentials `make -s env` exports."""
    commands = documented_mlflow_commands()
    runs = [cmd for cmd in commands if cmd.startswith("mlflow run ")]
    entry_points = {cmd.split(" -e ")[1].split()[0] if " -e " in cmd else "main" for cmd in runs}
    assert entry_points == set(yaml.safe_load((REPO_ROOT / "jobs" / "MLproject").read_text())["entry_points"])

    sample = REPO_ROOT / "data" / "wine-quality-sample.csv"
    scored = sample.with_name("wine-quality-sample.predictions.csv")
    made = [path for path in (sample, scored) if not path.exists()]
    if sample in made:
        sample_input.write("wine-quality", sample, rows=50)
    before = {name: len(mlflow_client.search_model_versions(f"name='{name}'")) for name in ("wine-quality", "psystock")}
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), **lab.client_env()}
    try:
        for command in commands:
            result = subprocess.run(shlex.split(command), capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=600)
            assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
        assert commands[-1].startswith("mlflow models predict")
        assert len(json.loads(result.stdout.strip().splitlines()[-1])["predictions"]) == len(pd.read_csv(sample))
        predictions = pd.read_csv(scored)
        assert len(predictions) == len(pd.read_csv(sample)) and predictions["prediction"].notna().all()
    finally:
        for path in made:
            path.unlink(missing_ok=True)

    after = {name: mlflow_client.search_model_versions(f"name='{name}'") for name in before}
    assert len(after["wine-quality"]) == before["wine-quality"] + 4  # main and train_wine: default-params and tuned each
    [psystock] = [v for v in after["psystock"] if int(v.version) == before["psystock"] + 1]
    assert mlflow_client.get_run(psystock.run_id).data.params["n_estimators"] == "300"
    # The scoring run is a child of the run `mlflow run` made, in its experiment.
    [scoring] = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        max_results=1,
        filter_string="attributes.run_name = 'batch_scoring'",
        order_by=["start_time DESC"],
    )
    parent = mlflow_client.get_run(scoring.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["mlflow.project.entryPoint"] == "score"
    assert scoring.info.experiment_id == parent.info.experiment_id
