"""wine-quality: ElasticNet on scikit-learn's bundled wine data, then a hyperparameter search.

Two runs in the experiment `wine-quality`: `default-params`, and a parent run
`hyperparameter-tuning` whose child runs (autologged) hold the best candidates. Both
log test RMSE/MAE/R², a predicted-vs-actual plot and a model with signature and input
example, registered as `wine-quality`.
"""

from __future__ import annotations

from typing import Annotated

import matplotlib

matplotlib.use("Agg")  # no display in containers or CI
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
import typer
from mlflow.models import infer_signature
from scipy.stats import loguniform, uniform
from sklearn.datasets import load_wine
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import RandomizedSearchCV, train_test_split

from mlflow_lab.jobs.promote import declare_promotion_metric
from mlflow_lab.jobs.runs import job_runs

MODEL_NAME = "wine-quality"


def load_data(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    data = load_wine(as_frame=True)
    features = data.data.astype("float64")
    target = data.target.astype("float64").rename("quality")
    return train_test_split(features, target, test_size=0.25, random_state=seed)


def evaluate_and_log(model, x_train, x_test, y_test, register_as: str) -> dict[str, float]:
    predicted = model.predict(x_test)
    metrics = {
        "test_rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
        "test_mae": float(mean_absolute_error(y_test, predicted)),
        "test_r2": float(r2_score(y_test, predicted)),
    }
    mlflow.log_metrics(metrics)
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.scatter(y_test, predicted, alpha=0.6)
    axes.plot([y_test.min(), y_test.max()], [y_test.min(), y_test.max()], "k--", linewidth=1)
    axes.set(xlabel="actual", ylabel="predicted", title=f"RMSE {metrics['test_rmse']:.3f}")
    mlflow.log_figure(figure, "plots/predicted_vs_actual.png")
    plt.close(figure)
    mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=register_as,
        signature=infer_signature(x_train, model.predict(x_train)),
        input_example=x_train.head(5),
    )
    return metrics


def train(experiment: str = MODEL_NAME, register_as: str = MODEL_NAME, n_iter: int = 20, seed: int = 42) -> dict:
    # Autolog params and CV child runs; the registered model is logged explicitly below.
    mlflow.sklearn.autolog(log_models=False, max_tuning_runs=5, silent=True)
    x_train, x_test, y_train, y_test = load_data(seed)
    results = {}
    with job_runs(experiment) as start_run:
        with start_run("default-params") as run:
            model = ElasticNet(random_state=seed).fit(x_train, y_train)
            results["default-params"] = (run.info.run_id, evaluate_and_log(model, x_train, x_test, y_test, register_as))
        with start_run("hyperparameter-tuning") as run:
            search = RandomizedSearchCV(
                ElasticNet(random_state=seed, max_iter=10_000),
                {"alpha": loguniform(1e-4, 1.0), "l1_ratio": uniform(0, 1)},
                n_iter=n_iter,
                cv=5,
                scoring="neg_mean_absolute_error",
                random_state=seed,
            ).fit(x_train, y_train)
            results["hyperparameter-tuning"] = (
                run.info.run_id,
                evaluate_and_log(search.best_estimator_, x_train, x_test, y_test, register_as),
            )
    mlflow.sklearn.autolog(disable=True)
    declare_promotion_metric(mlflow.MlflowClient(), register_as, "test_rmse", higher_is_better=False)
    return results


def main(
    experiment: Annotated[str, typer.Option(envvar="WINE_EXPERIMENT", help="Experiment to log to.")] = MODEL_NAME,
    register_as: Annotated[str, typer.Option(envvar="WINE_MODEL_NAME", help="Registered model name.")] = MODEL_NAME,
    n_iter: Annotated[int, typer.Option(min=1, help="Candidates tried by the randomized search.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed for the split and the search.")] = 42,
) -> None:
    """Train the wine-quality model twice (default params, tuned) and register both versions."""
    for name, (run_id, metrics) in train(experiment, register_as, n_iter, seed).items():
        typer.echo(f"{name:22} run {run_id}  " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
