"""psystock training and batch scoring against the lab, through nginx, the way `make score` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlflow_lab.jobs import promote, sample_input, train_psystock, train_wine
from mlflow_lab.storage import s3_client

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def models(mlflow_client):
    """A wine-quality and a psystock model, version 1 of each in Production, under names unique to this run."""
    suffix = uuid.uuid4().hex[:6]
    wine, stock = f"wine-quality-{suffix}", f"psystock-{suffix}"
    train_wine.train(experiment=wine, register_as=wine, n_iter=2)
    run_id, metrics = train_psystock.train(experiment=stock, register_as=stock, days=800, n_estimators=30)
    decisions = {name: promote.promote(mlflow_client, name, "1") for name in (wine, stock)}
    return {"wine": wine, "stock": stock, "stock_run": (run_id, metrics), "decisions": decisions, "client": mlflow_client}


def run_job(lab, *args: str, cwd: Path | None = None, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **lab.client_env(), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mlflow_lab.jobs", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def in_process(model_uri: str, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(mlflow.pyfunc.load_model(model_uri).predict(frame)).reshape(-1)


def test_psystock_is_registered_with_metrics_plots_and_its_promotion_metric(models):
    client, name = models["client"], models["stock"]
    run_id, metrics = models["stock_run"]
    run = client.get_run(run_id)
    assert {"test_auc", "test_accuracy", "test_logloss"} <= set(run.data.metrics)
    assert 0.0 <= run.data.metrics["test_auc"] <= 1.0
    assert run.data.params["max_depth"] == "3" and "synthetic" in run.data.params["data"]
    assert {"plots/roc_curve.png", "plots/feature_importance.png"} <= {a.path for a in client.list_artifacts(run_id, "plots")}
    assert client.get_registered_model(name).tags == {"promotion.metric": "test_auc", "promotion.goal": "maximize"}
    assert models["decisions"][name].promoted
    assert client.get_model_version(name, "1").tags["promotion.metric"] == "test_auc"


def test_score_csv_rows_in_order_with_pyfunc_predictions_and_a_logged_run(lab, models, tmp_path):
    name = models["wine"]
    source = sample_input.write("wine-quality", tmp_path / "wine.csv", rows=2500)
    result = run_job(lab, "score", str(source), "--model-uri", f"models:/{name}/Production")
    assert result.returncode == 0, result.stderr
    output = tmp_path / "wine.predictions.csv"
    assert f"scored 2500 rows with models:/{name}/1" in result.stdout

    rows, scored = pd.read_csv(source, dtype="float64"), pd.read_csv(output, dtype="float64")
    assert list(scored.columns) == [*rows.columns, "prediction"]
    pd.testing.assert_frame_equal(scored[rows.columns], rows)  # same rows, same order
    # Chunked prediction may differ from one big call in the last bit (BLAS summation order).
    np.testing.assert_allclose(scored["prediction"], in_process(f"models:/{name}/1", rows), rtol=1e-12)

    runs = mlflow.search_runs(
        experiment_names=["batch-scoring"], filter_string=f"params.model_name = '{name}'", output_format="list"
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == "batch_scoring"
    assert run.data.params["model_version"] == "1" and run.data.params["model_uri"] == f"models:/{name}/Production"
    assert run.data.metrics["input_rows"] == run.data.metrics["output_rows"] == 2500
    assert run.data.metrics["rows_per_s"] > 0
    logged = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="predictions/wine.predictions.csv", dst_path=str(tmp_path / "logged")
    )
    assert Path(logged).read_bytes() == output.read_bytes()


def test_score_parquet_classifier_with_kept_column_and_threshold(lab, models, tmp_path):
    name = models["stock"]
    features = sample_input.build("psystock", rows=1500, seed=3)
    frame = features.assign(day=pd.date_range("2030-01-01", periods=len(features)).strftime("%Y-%m-%d"))
    source = tmp_path / "stock.parquet"
    frame.to_parquet(source)
    output = tmp_path / "out.parquet"
    result = run_job(
        lab,
        "score",
        str(source),
        "--model-uri",
        f"models:/{name}@champion",
        "--keep",
        "day",
        "--output",
        str(output),
        "--threshold",
        "0.55",
        "--chunk-rows",
        "400",
        "--no-log-run",
    )
    assert result.returncode == 0, result.stderr
    scored = pd.read_parquet(output)
    assert list(scored.columns) == [*frame.columns, "probability", "decision"]
    assert scored["day"].tolist() == frame["day"].tolist()
    expected = in_process(f"models:/{name}/1", features)
    np.testing.assert_allclose(scored["probability"], expected, rtol=1e-6)
    assert (scored["decision"] == (scored["probability"] >= 0.55).astype(int)).all()
    assert 0 < scored["decision"].sum() < len(scored)  # a real classifier, not a constant


def test_score_reads_mlflow_artifacts_uri(lab, models, tmp_path):
    source = sample_input.write("wine-quality", tmp_path / "upload" / "batch.csv", rows=300)
    mlflow.set_experiment("scoring-inputs")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source), "inputs")
    uri = f"{run.info.artifact_uri}/inputs/batch.csv"
    assert uri.startswith("mlflow-artifacts:/")
    result = run_job(lab, "score", uri, "--model-uri", f"models:/{models['wine']}/Production", "--no-log-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "batch.predictions.csv")) == 300


def test_score_reads_s3_uri_with_path_style_endpoint(lab, models, tmp_path):
    lab.require_internals()
    settings = lab.s3_settings()
    source = sample_input.write("wine-quality", tmp_path / "s3.csv", rows=200)
    key = f"inputs/{uuid.uuid4().hex}/s3.csv"
    s3_client(settings).upload_file(str(source), settings["S3_BUCKET"], key)
    result = run_job(
        lab,
        "score",
        f"s3://{settings['S3_BUCKET']}/{key}",
        "--model-uri",
        f"models:/{models['wine']}/Production",
        "--no-log-run",
        cwd=tmp_path,
        extra_env={
            "MLFLOW_S3_ENDPOINT_URL": settings["S3_ENDPOINT_URL"],
            "AWS_ACCESS_KEY_ID": settings["S3_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": settings["S3_SECRET_ACCESS_KEY"],
        },
    )
    assert result.returncode == 0, result.stderr
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "s3.predictions.csv").drop(columns="prediction"), pd.read_csv(source), check_dtype=False
    )


def _wine_rows(tmp_path: Path) -> pd.DataFrame:
    return sample_input.build("wine-quality", rows=50, seed=1)


BAD_INPUTS = {
    # case: (writes the input file, expected words in the error)
    "missing column": (
        lambda p: _wine_rows(p).drop(columns="proline").to_csv(p / "in.csv", index=False),
        ["lacks column(s) proline"],
    ),
    "extra column": (
        lambda p: _wine_rows(p).assign(colour="red").to_csv(p / "in.csv", index=False),
        ["has column(s) colour that the model does not take", "--keep colour"],
    ),
    "wrong type": (
        lambda p: (
            _wine_rows(p)
            .astype({"ash": object})
            .pipe(lambda f: f.assign(ash=["low"] + f["ash"].tolist()[1:]))
            .to_csv(p / "in.csv", index=False)
        ),
        ["column 'ash' holds 'low'", "double"],
    ),
    "NaN the model cannot take": (
        lambda p: _wine_rows(p).assign(ash=np.nan).to_csv(p / "in.csv", index=False),
        ["rows 1-50:", "NaN"],
    ),
    "empty file": (lambda p: (p / "in.csv").write_text(""), ["is empty"]),
    "header only": (lambda p: _wine_rows(p).head(0).to_csv(p / "in.csv", index=False), ["has a header but no rows"]),
    "bad value after the first chunks": (
        lambda p: pd.concat(
            [sample_input.build("wine-quality", rows=200_000, seed=2), _wine_rows(p).head(1).astype(object).assign(hue="x")]
        ).to_csv(p / "in.csv", index=False),
        ["column 'hue' holds 'x'"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_with_one_sentence_and_no_output(lab, models, tmp_path, case):
    write_input, expected = BAD_INPUTS[case]
    write_input(tmp_path)
    result = run_job(
        lab, "score", str(tmp_path / "in.csv"), "--model-uri", f"models:/{models['wine']}/Production", "--no-log-run"
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'in.csv'}") and result.stderr.count("\n") == 1
    for words in expected:
        assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # nothing partial left behind


def test_nan_in_an_integer_column_is_refused(lab, models, tmp_path):
    frame = sample_input.build("psystock", rows=20, seed=1).astype(object)
    frame.loc[5, "move_3"] = np.nan
    frame.to_csv(tmp_path / "in.csv", index=False)
    result = run_job(
        lab, "score", str(tmp_path / "in.csv"), "--model-uri", f"models:/{models['stock']}/Production", "--no-log-run"
    )
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith(f"error: {tmp_path / 'in.csv'}, rows 1-20:") and "move_3" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize(
    "model_uri, expected",
    [
        ("models:/no-such-model/Production", "model 'no-such-model' is not registered at {url}."),
        ("models:/{wine}/99", "model '{wine}' has no version 99 at {url}."),
        ("models:/{wine}/Staging", "model '{wine}' has no version in stage 'Staging' at {url}."),
        ("models:/{wine}@nobody", "model '{wine}' has no alias @nobody at {url}."),
    ],
)
def test_unknown_model_says_which_and_where(lab, models, tmp_path, model_uri, expected):
    source = sample_input.write("wine-quality", tmp_path / "in.csv", rows=5)
    result = run_job(lab, "score", str(source), "--model-uri", model_uri.format(wine=models["wine"]))
    assert result.returncode == 1
    assert result.stderr.strip() == "error: " + expected.format(wine=models["wine"], url=lab.url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
