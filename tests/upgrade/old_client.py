"""Runs under MLflow 2.x (tests/upgrade/requirements-mlflow2.txt), against an MLflow 2.x server:
the lab as an older MLflow left it. Prints what it wrote as JSON for the test to check later."""

import json
import sys

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from sklearn.linear_model import ElasticNet

name = sys.argv[1]
rng = np.random.default_rng(7)
features = pd.DataFrame(rng.normal(size=(200, 3)), columns=["acidity", "sugar", "alcohol"])
target = features.to_numpy() @ np.array([1.5, -2.0, 0.5]) + rng.normal(scale=0.1, size=200)
mlflow.set_experiment(name)
with mlflow.start_run(run_name="trained-by-mlflow-2") as run:
    model = ElasticNet(alpha=0.01).fit(features, target)
    mlflow.log_params({"alpha": 0.01, "l1_ratio": 0.5})
    for step in range(10):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_text("written by MLflow 2\n", "notes/readme.txt")
    info = mlflow.sklearn.log_model(model, "model", registered_model_name=name, input_example=features[:2])
client = MlflowClient()
client.transition_model_version_stage(name, "1", "Production")
sample = features[:5]
print(
    json.dumps(
        {
            "mlflow": mlflow.__version__,
            "run_id": run.info.run_id,
            "loss": [1.0 / (step + 1) for step in range(10)],
            "sample": sample.to_dict(orient="split"),
            "predictions": model.predict(sample).tolist(),
            "model_uri": info.model_uri,
        }
    )
)
