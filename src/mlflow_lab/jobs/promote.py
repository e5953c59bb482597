"""Promote a registered model version: `Production` stage and `@champion` alias together.

A challenger replaces the current Production version only if its test metric is better
(`--force` overrides). A version whose run lacks the metric (registered by another client)
cannot be compared and is refused, unless forced. The decision and both metrics are
printed and recorded as tags on the challenger. Promoting the version already in
Production changes nothing. A refusal is a normal outcome of the gate: the command exits 0
unless `--strict` (for CI gates) or something failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import typer
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_lab.errors import LabError
from mlflow_lab.registry import stage_api

ALIAS = "champion"
STAGE = "Production"
# Registered-model tags written by training: which run metric decides, and which way.
METRIC_TAG, GOAL_TAG = "promotion.metric", "promotion.goal"
DEFAULT_METRIC = "test_rmse"


@dataclass(frozen=True)
class Decision:
    model: str
    version: str
    promoted: bool
    reason: str
    challenger_metric: float | None
    champion_version: str | None
    champion_metric: float | None

    @property
    def refused(self) -> bool:
        return self.reason.startswith("refused")


def _metric(client: MlflowClient, model: str, version: str, metric: str) -> float | None:
    """The version's run metric; None if it has no run, or the run lacks the metric."""
    run_id = client.get_model_version(model, version).run_id
    if not run_id:
        return None
    try:
        return client.get_run(run_id).data.metrics.get(metric)
    except MlflowException:  # the run was deleted
        return None


def _compare(
    metric: str,
    version: str,
    challenger: float | None,
    champion_version: str | None,
    champion: float | None,
    higher_is_better: bool,
) -> tuple[bool | None, str]:
    """(whether the challenger wins, why); None when the two cannot be compared."""
    if champion_version is None:
        return True, "no version in Production yet"
    if challenger is None:
        return None, f"version {version} has no metric {metric} on its run"
    if champion is None:
        return None, f"version {champion_version} in Production has no metric {metric} to compare with"
    wins = challenger > champion if higher_is_better else challenger < champion
    verb = "beats" if wins else "does not beat"
    return wins, f"{metric} {challenger:.4g} {verb} {champion:.4g} of version {champion_version}"


def declare_promotion_metric(client: MlflowClient, model: str, metric: str, higher_is_better: bool) -> None:
    """Record on the registered model how its versions are compared, so `make promote` needs no flags."""
    client.set_registered_model_tag(model, METRIC_TAG, metric)
    client.set_registered_model_tag(model, GOAL_TAG, "maximize" if higher_is_better else "minimize")


def promotion_metric(client: MlflowClient, model: str) -> tuple[str, bool]:
    tags = client.get_registered_model(model).tags
    return tags.get(METRIC_TAG, DEFAULT_METRIC), tags.get(GOAL_TAG) == "maximize"


def current_production(client: MlflowClient, model: str) -> str | None:
    with stage_api():
        versions = client.get_latest_versions(model, stages=[STAGE])
    return versions[0].version if versions else None


def promote(
    client: MlflowClient,
    model: str,
    version: str | None,
    metric: str | None = None,
    higher_is_better: bool | None = None,
    force: bool = False,
) -> Decision:
    """Compare on `metric` (default: the model's declared promotion metric, else test_rmse)."""
    try:
        versions = [v.version for v in client.search_model_versions(f"name='{model}'")]
    except MlflowException as exc:
        raise LabError(f"could not list the versions of model {model!r} at {client.tracking_uri}: {exc.message}") from None
    if not versions:
        raise LabError(f"no version of model {model!r} is registered at {client.tracking_uri}.")
    version = version or max(versions, key=int)
    if metric is None:
        metric, declared_higher = promotion_metric(client, model)
        higher_is_better = declared_higher if higher_is_better is None else higher_is_better
    higher_is_better = bool(higher_is_better)
    try:
        client.get_model_version(model, version)
    except MlflowException:
        raise LabError(f"model {model!r} has no version {version} at {client.tracking_uri}.") from None

    champion = current_production(client, model)
    challenger_value = _metric(client, model, version, metric)
    if champion == version:
        return Decision(
            model, version, False, f"version {version} is already in {STAGE}", challenger_value, champion, challenger_value
        )
    champion_value = _metric(client, model, champion, metric) if champion else None
    wins, why = _compare(metric, version, challenger_value, champion, champion_value, higher_is_better)
    promoted = bool(wins) or force
    if wins:
        reason = why
    elif force:
        reason = f"forced: {why}"
    else:
        reason = f"refused: {why}" + ("; --force promotes it anyway" if wins is None else "")

    def text(value: float | None) -> str:
        return "" if value is None else str(value)

    tags = {
        "promotion.decision": "promoted" if promoted else "refused",
        "promotion.reason": reason,
        "promotion.metric": metric,
        "promotion.challenger_value": text(challenger_value),
        "promotion.champion_version": champion or "",
        "promotion.champion_value": text(champion_value),
    }
    for key, value in tags.items():
        client.set_model_version_tag(model, version, key, value)
    if promoted:
        with stage_api():
            client.transition_model_version_stage(model, version, STAGE, archive_existing_versions=True)
        _set_alias(client, model, version)
        settled = settle(client, model)
        if settled != version:
            promoted, reason = False, f"a promotion made at the same moment put version {settled} in {STAGE}"
    return Decision(model, version, promoted, reason, challenger_value, champion, champion_value)


def _set_alias(client: MlflowClient, model: str, version: str) -> None:
    """Point @champion at `version`. Two promoters writing it at once collide on the alias's
    key (MLflow deletes, then inserts): the loser's write is left to settle()."""
    try:
        client.set_registered_model_alias(model, ALIAS, version)
    except MlflowException as exc:
        if "registered_model_alias_pk" not in str(exc) and "already exists" not in str(exc):
            raise


def settle(client: MlflowClient, model: str, rounds: int = 20) -> str | None:
    """One version in Production with @champion on it, whatever promotions ran at the same moment.

    The registry has no transaction across a stage transition and an alias (two promotions at
    once were seen to leave two versions in Production, or the alias on the archived one, or
    to fail on the alias's key). Every promoter ends here: while the state is not one version
    in Production carrying the alias, it keeps the highest one (the version
    models:/<name>/Production resolves to), archives the others and moves the alias, then
    looks again. The last writer's final look sees everyone's writes, so the state converges.
    """
    for _ in range(rounds):
        with stage_api():
            production = sorted(
                (v.version for v in client.search_model_versions(f"name='{model}'") if v.current_stage == STAGE), key=int
            )
        if not production:
            return None
        try:
            alias: str | None = client.get_model_version_by_alias(model, ALIAS).version
        except MlflowException:
            alias = None
        winner = production[-1]
        if production == [winner] and alias == winner:
            return winner
        with stage_api():
            for other in production[:-1]:
                client.transition_model_version_stage(model, other, "Archived")
        _set_alias(client, model, winner)
        time.sleep(0.05)
    raise LabError(f"model {model!r}: promotions at the same moment did not settle on one {STAGE} version; run promote again.")


def main(
    models: Annotated[
        list[str], typer.Argument(metavar="MODEL...", help="Registered model name(s), e.g. wine-quality psystock.")
    ],
    version: Annotated[str, typer.Option(help="Version to promote (one model only); the newest when omitted.")] = "",
    metric: Annotated[
        str,
        typer.Option(
            envvar="PROMOTE_METRIC",
            help="Run metric compared between versions; default: the one training declared "
            "on the model (wine-quality: test_rmse, psystock: test_auc).",
        ),
    ] = "",
    higher_is_better: Annotated[
        bool | None, typer.Option("--higher-is-better/--lower-is-better", help="Which way the metric wins; default: as declared.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Promote even if the metric is not better or missing.")] = False,
    strict: Annotated[
        bool,
        typer.Option(
            envvar="PROMOTE_STRICT", help="Exit 2 if any challenger is refused (for CI gates); default: a refusal exits 0."
        ),
    ] = False,
    tracking_uri: Annotated[str, typer.Option(envvar="MLFLOW_TRACKING_URI", help="MLflow server.")] = "",
) -> None:
    """Move each model's newest version (or --version) to Production and set @champion, if it beats the current one.

    Each model is decided on its own: a refusal or an error for one does not stop the next.
    Exit 1 if any model failed, else 2 if --strict and any was refused, else 0."""
    if version and len(models) > 1:
        raise LabError(f"--version {version} names one version, but {len(models)} models were given.")
    client = MlflowClient(tracking_uri or None)
    failed = refused = False
    for model in models:
        try:
            decision = promote(client, model, version or None, metric or None, higher_is_better, force)
        except LabError as exc:
            typer.echo(f"error: {exc}", err=True)
            failed = True
            continue
        verb = "promoted" if decision.promoted else "unchanged"
        typer.echo(f"{decision.model} v{decision.version}: {verb} ({decision.reason})")
        refused |= decision.refused
    if failed:
        raise typer.Exit(1)
    if strict and refused:
        raise typer.Exit(2)
