"""psystock: an XGBoost classifier for "is tomorrow's BTC/USD close up?" (the book's PsyStock).

Features are the previous 14 days' up/down moves, built from a seeded SYNTHETIC price
series (see mlflow_lab.features.psystock). The split is by time: the last 20% of days are
the test set. The registered model is the trained booster, so `pyfunc.predict` returns
the probability of an up day; batch scoring turns it into a 0/1 decision.
"""

from __future__ import annotations

from typing import Annotated

import matplotlib

matplotlib.use("Agg")  # no display in containers or CI
import matplotlib.pyplot as plt
import mlflow
import typer
import xgboost as xgb
from mlflow.models import infer_signature
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score, roc_curve

from mlflow_lab.features.psystock import FEATURES, TARGET, build_features, synthetic_prices
from mlflow_lab.jobs.promote import declare_promotion_metric
from mlflow_lab.jobs.runs import job_runs
from mlflow_lab.scoring import CLASSIFIER_TASK

MODEL_NAME = "psystock"


def load_data(days: int, seed: int):
    frame = build_features(synthetic_prices(days, seed)).dropna(subset=[TARGET])
    split = int(len(frame) * 0.8)
    train, test = frame.iloc[:split], frame.iloc[split:]
    return train[FEATURES], test[FEATURES], train[TARGET].astype("int64"), test[TARGET].astype("int64")


def log_plots(booster: xgb.Booster, y_test, probability) -> None:
    false_pos, true_pos, _ = roc_curve(y_test, probability)
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot(false_pos, true_pos, label=f"AUC {roc_auc_score(y_test, probability):.3f}")
    axes.plot([0, 1], [0, 1], "k--", linewidth=1)
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test set)")
    axes.legend(loc="lower right")
    mlflow.log_figure(figure, "plots/roc_curve.png")
    plt.close(figure)
    gain = booster.get_score(importance_type="gain")
    figure, axes = plt.subplots(figsize=(6, 5))
    names = sorted(FEATURES, key=lambda name: gain.get(name, 0.0))
    axes.barh(names, [gain.get(name, 0.0) for name in names])
    axes.set(xlabel="gain", title="feature importance")
    mlflow.log_figure(figure, "plots/feature_importance.png")
    plt.close(figure)


def train(
    experiment: str = MODEL_NAME,
    register_as: str = MODEL_NAME,
    days: int = 3000,
    seed: int = 7,
    n_estimators: int = 200,
    max_depth: int = 3,
    learning_rate: float = 0.05,
) -> tuple[str, dict[str, float]]:
    x_train, x_test, y_train, y_test = load_data(days, seed)
    params = {
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "learning_rate": learning_rate,
        "objective": "binary:logistic",
        "random_state": seed,
    }
    with job_runs(experiment) as start_run, start_run("xgboost") as run:
        mlflow.log_params({**params, "days": days, "data": "synthetic (seeded GARCH random walk)"})
        classifier = xgb.XGBClassifier(**params).fit(x_train, y_train)
        probability = classifier.predict_proba(x_test)[:, 1]
        metrics = {
            "test_auc": float(roc_auc_score(y_test, probability)),
            "test_accuracy": float(accuracy_score(y_test, probability >= 0.5)),
            "test_logloss": float(log_loss(y_test, probability)),
        }
        mlflow.log_metrics(metrics)
        booster = classifier.get_booster()
        log_plots(booster, y_test, probability)
        mlflow.xgboost.log_model(
            booster,
            name="model",
            registered_model_name=register_as,
            model_format="ubj",
            signature=infer_signature(x_train, classifier.predict_proba(x_train)[:, 1]),
            input_example=x_train.head(5),
            metadata={"task": CLASSIFIER_TASK},
        )
    declare_promotion_metric(mlflow.MlflowClient(), register_as, "test_auc", higher_is_better=True)
    return run.info.run_id, metrics


def main(
    experiment: Annotated[str, typer.Option(envvar="PSYSTOCK_EXPERIMENT", help="Experiment to log to.")] = MODEL_NAME,
    register_as: Annotated[str, typer.Option(envvar="PSYSTOCK_MODEL_NAME", help="Registered model name.")] = MODEL_NAME,
    days: Annotated[int, typer.Option(min=100, help="Length of the synthetic daily price series.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic series and of XGBoost.")] = 7,
    n_estimators: Annotated[int, typer.Option(min=1, help="Boosting rounds.")] = 200,
    max_depth: Annotated[int, typer.Option(min=1, help="Maximum tree depth.")] = 3,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Shrinkage per round.")] = 0.05,
) -> None:
    """Train the psystock classifier on synthetic BTC/USD data and register a version."""
    run_id, metrics = train(experiment, register_as, days, seed, n_estimators, max_depth, learning_rate)
    typer.echo(f"xgboost run {run_id}  " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
