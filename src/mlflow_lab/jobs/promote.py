"""Promote a registered model version: `Production` stage and `@champion` alias together.

A challenger replaces the current Production version only if its test metric is better
(`--force` overrides). The decision and both metrics are printed and recorded as tags on
the challenger. Promoting the version already in Production changes nothing.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Annotated

import typer
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_lab.errors import LabError

ALIAS = "champion"
STAGE = "Production"


@dataclass(frozen=True)
class Decision:
    model: str
    version: str
    promoted: bool
    reason: str
    challenger_metric: float | None
    champion_version: str | None
    champion_metric: float | None


def _metric(client: MlflowClient, model: str, version: str, metric: str) -> float:
    run_id = client.get_model_version(model, version).run_id
    value = client.get_run(run_id).data.metrics.get(metric)
    if value is None:
        raise LabError(f"version {version} of model {model!r} has no metric {metric!r} on its run {run_id}.")
    return value


@contextlib.contextmanager
def stage_api():
    """Stages are deprecated (FutureWarning) but are the book's workflow: use them quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def current_production(client: MlflowClient, model: str) -> str | None:
    with stage_api():
        versions = client.get_latest_versions(model, stages=[STAGE])
    return versions[0].version if versions else None


def promote(client: MlflowClient, model: str, version: str | None, metric: str,
            higher_is_better: bool = False, force: bool = False) -> Decision:
    try:
        version = version or max((v.version for v in client.search_model_versions(f"name='{model}'")), key=int)
    except MlflowException:
        raise LabError(f"model {model!r} is not registered at {client.tracking_uri}.") from None
    except ValueError:
        raise LabError(f"no version of model {model!r} is registered at {client.tracking_uri}.") from None
    try:
        client.get_model_version(model, version)
    except MlflowException:
        raise LabError(f"model {model!r} has no version {version} at {client.tracking_uri}.") from None

    champion = current_production(client, model)
    challenger_value = _metric(client, model, version, metric)
    champion_value = _metric(client, model, champion, metric) if champion and champion != version else None
    if champion == version:
        return Decision(model, version, False, f"version {version} is already in {STAGE}",
                        challenger_value, champion, challenger_value)
    better = champion_value is None or (
        challenger_value > champion_value if higher_is_better else challenger_value < champion_value)
    if champion is None:
        reason = f"no version in {STAGE} yet"
    elif better:
        reason = f"{metric} {challenger_value:.4g} beats {champion_value:.4g} of version {champion}"
    elif force:
        reason = f"forced: {metric} {challenger_value:.4g} does not beat {champion_value:.4g} of version {champion}"
    else:
        reason = f"refused: {metric} {challenger_value:.4g} does not beat {champion_value:.4g} of version {champion}"
    promoted = better or force
    tags = {"promotion.decision": "promoted" if promoted else "refused", "promotion.reason": reason,
            "promotion.metric": metric, "promotion.challenger_value": str(challenger_value),
            "promotion.champion_version": champion or "", "promotion.champion_value": str(champion_value or "")}
    for key, value in tags.items():
        client.set_model_version_tag(model, version, key, value)
    if promoted:
        with stage_api():
            client.transition_model_version_stage(model, version, STAGE, archive_existing_versions=True)
        client.set_registered_model_alias(model, ALIAS, version)
    return Decision(model, version, promoted, reason, challenger_value, champion, champion_value)


def main(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. wine-quality.")],
    version: Annotated[str, typer.Option(help="Version to promote; the newest when omitted.")] = "",
    metric: Annotated[str, typer.Option(envvar="PROMOTE_METRIC", help="Run metric compared between versions.")] = "test_rmse",
    higher_is_better: Annotated[bool, typer.Option(help="Higher metric wins (e.g. AUC); default: lower wins.")] = False,
    force: Annotated[bool, typer.Option(help="Promote even if the metric is not better.")] = False,
    tracking_uri: Annotated[str, typer.Option(envvar="MLFLOW_TRACKING_URI", help="MLflow server.")] = "",
) -> None:
    """Move a model version to Production and set @champion, if it beats the current one."""
    try:
        decision = promote(MlflowClient(tracking_uri or None), model, version or None, metric, higher_is_better, force)
    except LabError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    verb = "promoted" if decision.promoted else "unchanged"
    typer.echo(f"{decision.model} v{decision.version}: {verb} ({decision.reason})")
    if not decision.promoted and decision.reason.startswith("refused"):
        raise typer.Exit(2)


if __name__ == "__main__":
    typer.run(main)
