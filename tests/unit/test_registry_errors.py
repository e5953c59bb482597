"""The registry's two kinds of "no": it names no such version (LabError), or it could not be
asked at all (RegistryUnavailable). The model API's follower keeps its version gauges on the
second (a tracking server cut off must not look like an emptied registry to the
ModelApiServingStaleVersion alert)."""

from __future__ import annotations

import socket

import pytest
from mlflow import MlflowClient

from mlflow_lab import registry
from mlflow_lab.errors import LabError


def test_a_registry_that_cannot_be_reached_is_unavailable(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(registry.RegistryUnavailable, match="could not look up model 'wine'"):
        registry.resolve("models:/wine/Production", MlflowClient(url, url))


@pytest.mark.parametrize("uri", ["models:/absent/Production", "models:/present@champion", "models:/present/7"])
def test_a_registry_that_names_nothing_is_not_unavailable(tmp_path, uri):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store, store)
    client.create_registered_model("present")
    with pytest.raises(LabError) as raised:
        registry.resolve(uri, client)
    assert not isinstance(raised.value, registry.RegistryUnavailable), raised.value
