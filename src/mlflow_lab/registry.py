"""Resolve `models:/` URIs to one concrete registered version, with errors a user can act on.

Batch scoring and the model API both pin the version they resolved (`models:/<name>/<n>`),
so a promotion that happens mid-job cannot mix two versions, and both can say which
version they used.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_lab.errors import LabError

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<ref>[^/@]+)|@(?P<alias>[^/@]+))/?$")


@contextlib.contextmanager
def stage_api():
    """Stages are deprecated (FutureWarning) but are the book's workflow: use them quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class RegistryUnavailable(LabError):
    """The registry could not be asked (the tracking server is down, restarting or cut off), as
    opposed to it answering that it names no such version."""


# What MLflow answers for a name, alias, version or stage the registry does not have.
_NOT_THERE = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def resolve_registered(uri: str, client: MlflowClient | None = None) -> ModelRef:
    """Like `resolve`, for a URI that must name a registered model."""
    ref = resolve(uri, client)
    if ref is None:
        raise LabError(f"{uri!r} is not a registered model's URI (models:/<name>/<stage|version> or models:/<name>@<alias>).")
    return ref


def resolve(uri: str, client: MlflowClient | None = None) -> ModelRef | None:
    """The version a `models:/` URI points at now; None for other URIs (runs:/, paths, s3://)."""
    match = _MODELS_URI.match(uri)
    if not match:
        if uri.startswith("models:"):
            raise LabError(f"{uri!r} is not a model URI of the form models:/<name>/<stage|version> or models:/<name>@<alias>.")
        return None
    name, ref, alias = match["name"], match["ref"], match["alias"]
    client = client or MlflowClient()
    where = client.tracking_uri
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise LabError(f"model {name!r} is not registered at {where}.") from None
        raise RegistryUnavailable(f"could not look up model {name!r} at {where}: {exc.message}") from None
    try:
        if alias:
            return ModelRef(name, client.get_model_version_by_alias(name, alias).version)
        if ref.isdigit():
            return ModelRef(name, client.get_model_version(name, ref).version)
        with stage_api():
            versions = client.get_latest_versions(name, stages=[ref])
    except MlflowException as exc:
        if exc.error_code not in _NOT_THERE:
            raise RegistryUnavailable(f"could not look up model {name!r} at {where}: {exc.message}") from None
        what = f"alias @{alias}" if alias else f"version {ref}" if ref.isdigit() else f"stage {ref!r}"
        raise LabError(f"model {name!r} has no {what} at {where}.") from None
    if not versions:
        raise LabError(f"model {name!r} has no version in stage {ref!r} at {where}.")
    return ModelRef(name, max((v.version for v in versions), key=int))
