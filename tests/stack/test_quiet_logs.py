"""A plain training session leaves no errors in the logs, and real problems still show."""

from __future__ import annotations

import http.client
import time
import uuid

import mlflow
import psycopg2
import pytest
from sklearn.linear_model import LinearRegression

from mlflow_lab.jobs import train_wine

pytestmark = pytest.mark.stack


def test_an_idle_connection_to_the_tracking_server_outlives_the_model_apis_poll_interval(lab):
    """The model API polls the registry every MODEL_API_POLL_SECONDS on a kept-alive connection;
    the server must not be closing it just then (the cause of its 'Connection reset' retries)."""
    host, port = lab.address("mlflow", "MLFLOW_PORT")
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/health")
    assert connection.getresponse().read() == b"OK"
    time.sleep(lab.settings.int("MODEL_API_POLL_SECONDS") + 1)
    connection.request("GET", "/health")  # the same connection, after a poll's idle gap
    assert connection.getresponse().read() == b"OK"
    connection.close()


def test_log_model_after_metrics_and_registering_twice_log_no_database_errors_and_lose_nothing(lab, mlflow_client):
    """MLflow 3 logs a run's metrics again when a model is logged after them, and tries to create
    the registered model on every registration: the tutorials' plain pattern."""
    lab.require_internals()
    name = f"quiet-{uuid.uuid4().hex[:6]}"
    features, _, target, _ = train_wine.load_data(42)
    mlflow.set_experiment(name)
    for _ in range(2):  # the second registration finds the registered model already there
        with mlflow.start_run() as run:
            mlflow.log_metrics({"test_rmse": 0.5, "test_r2": 0.75})
            info = mlflow.sklearn.log_model(LinearRegression().fit(features, target), name="model", registered_model_name=name)
    assert len(mlflow_client.search_model_versions(f"name='{name}'")) == 2
    history = mlflow_client.get_metric_history(run.info.run_id, "test_rmse")
    assert [(m.value, m.step) for m in history] == [(0.5, 0)]  # logged once, nothing doubled
    assert {m.key for m in mlflow.get_logged_model(info.model_id).metrics} == {"test_rmse", "test_r2"}

    with pytest.raises(psycopg2.OperationalError):  # a real problem: must still be logged
        host, port = lab.address("postgres", "POSTGRES_PORT")
        psycopg2.connect(
            host=host,
            port=port,
            user=lab.settings["POSTGRES_USER"],
            password="wrong",
            dbname=lab.settings["POSTGRES_DB"],
            connect_timeout=5,
        )
    deadline = time.monotonic() + 10
    while "password authentication failed" not in (log := lab.log_tail("postgres", 400)):
        assert time.monotonic() < deadline, log[-2000:]
        time.sleep(0.5)
    assert "duplicate key" not in log and "ERROR:" not in log, log[-3000:]
