"""A lab written by MLflow 2.x keeps working after `make up` with this MLflow (see harness):
init ran `mlflow db upgrade`; the old run, metric history, artifact and stage are there
through nginx; the old Production model loads and the model API serves it; new writes succeed.
(Restoring the old lab's archive onto both runners' labs: tests/stack/test_backup.py.)"""

from __future__ import annotations

import time

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests

from mlflow_lab.stack import init_stack
from tests.conftest import client_for
from tests.upgrade.harness import NAME, on_loopback

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def upgraded(mlflow2_lab):
    return mlflow2_lab[:3]


@pytest.fixture(scope="module")
def client(upgraded):
    s = upgraded[0].settings
    with client_for(s.tracking_uri("127.0.0.1"), s["LAB_USER"], s["LAB_PASSWORD"]) as lab_client:
        yield lab_client


def test_init_upgraded_the_mlflow2_schema(upgraded):
    stack, old, old_revision = upgraded
    from mlflow_lab.adapters.mlflow_internals import latest_schema_revision

    assert old["mlflow"].startswith("2.")
    assert old_revision and old_revision != latest_schema_revision()
    assert init_stack.schema_revision(on_loopback(stack.settings)) == latest_schema_revision()


def test_old_run_metric_history_and_artifact_are_there(upgraded, client):
    old = upgraded[1]
    run = client.get_run(old["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "trained-by-mlflow-2"
    assert run.data.params == {"alpha": "0.01", "l1_ratio": "0.5"}
    assert [m.value for m in sorted(client.get_metric_history(old["run_id"], "loss"), key=lambda m: m.step)] == old["loss"]
    assert mlflow.artifacts.load_text(f"runs:/{old['run_id']}/notes/readme.txt") == "written by MLflow 2\n"


def test_old_production_model_loads_and_the_model_api_serves_it(upgraded, client):
    stack, old = upgraded[0], upgraded[1]
    assert client.get_model_version(NAME, "1").current_stage == "Production"
    sample = pd.DataFrame(old["sample"]["data"], columns=old["sample"]["columns"])
    in_process = mlflow.pyfunc.load_model(f"models:/{NAME}/Production").predict(sample)
    np.testing.assert_allclose(np.asarray(in_process), old["predictions"], rtol=1e-12)

    s = stack.settings
    url = f"{s.tracking_uri('127.0.0.1')}/models/{NAME}/invocations"
    body = {"dataframe_split": {"columns": old["sample"]["columns"], "data": old["sample"]["data"]}}
    deadline, answer = time.monotonic() + 120, None
    while time.monotonic() < deadline:  # the model API loads it on its next registry poll
        answer = requests.post(url, json=body, auth=(s["LAB_USER"], s["LAB_PASSWORD"]), timeout=30)
        if answer.status_code == 200:
            break
        time.sleep(1)
    assert answer is not None and answer.status_code == 200, answer.text if answer is not None else "no answer"
    np.testing.assert_allclose(np.asarray(answer.json()["predictions"]).reshape(-1), old["predictions"], rtol=1e-9)


def test_new_writes_succeed_beside_the_old_data(upgraded, client):
    from sklearn.linear_model import LinearRegression

    old = upgraded[1]
    sample = pd.DataFrame(old["sample"]["data"], columns=old["sample"]["columns"])
    mlflow.set_experiment(NAME)
    with mlflow.start_run(run_name="trained-after-the-upgrade") as run:
        mlflow.log_metric("loss", 0.05)
        mlflow.sklearn.log_model(
            LinearRegression().fit(sample, old["predictions"]), name="model", registered_model_name=NAME, input_example=sample
        )
    assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.05}
    assert client.get_model_version(NAME, "2").run_id == run.info.run_id
    assert client.get_model_version(NAME, "1").current_stage == "Production"  # untouched
