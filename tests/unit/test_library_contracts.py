"""What the lab relies on in MLServer's and MLflow's private parts (mlflow_lab/adapters), checked
against the installed, locked versions. An upgrade that moves any of it fails here, by name:
re-check the adapter against the new version, then move its CHECKED_AGAINST with the lock.
(tests/static/test_library_internals.py keeps those private names inside the adapters.)
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import re
import sqlite3
import sys
from contextlib import asynccontextmanager

import mlflow
import numpy as np
import pandas as pd
import prometheus_client
import pytest
import uvicorn
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from mlflow.models import infer_signature
from mlflow.pyfunc import PyFuncModel
from mlserver import MLModel, MLServer
from mlserver.batching import load_batching
from mlserver.cloudevents import CloudEventsTypes
from mlserver.handlers import DataPlane
from mlserver.registry import MultiModelRegistry
from mlserver.repository.load import load_model_settings
from mlserver.rest.server import RESTServer
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput
from mlserver_mlflow import MLflowRuntime
from sklearn.linear_model import LinearRegression
from starlette.requests import Request

from mlflow_lab.adapters import mlflow_internals, mlserver_internals
from mlflow_lab.compose import LOCK_FILE
from mlflow_lab.stack.model_api import mlserver_server, one_model
from mlflow_lab.stack.model_api.fast_path import FastPath


def locked(package: str) -> str | None:
    found = re.search(rf"^{re.escape(package)}==(\S+)$", LOCK_FILE.read_text(), re.MULTILINE | re.IGNORECASE)
    return found[1] if found else None


@pytest.mark.parametrize("adapter", [mlflow_internals, mlserver_internals], ids=lambda a: a.__name__.rsplit(".", 1)[-1])
def test_the_adapter_was_checked_against_the_locked_and_installed_version(adapter):
    for package, checked in adapter.CHECKED_AGAINST.items():
        assert locked(package) == checked, (
            f"{LOCK_FILE.name} has {package} {locked(package)}, {adapter.__name__} was checked against {checked}: "
            "re-check the adapter and these contracts against the new version, then update its CHECKED_AGAINST"
        )
        assert importlib.metadata.version(package) == checked, f"the environment is not the lock's ({package}): run make venv"


# MLflow -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({"a": rng.normal(size=20), "b": rng.normal(size=20)})


@pytest.fixture(scope="module")
def sklearn_dir(tmp_path_factory, frame):
    estimator = LinearRegression().fit(frame, frame["a"] * 2 + frame["b"])
    path = tmp_path_factory.mktemp("sklearn") / "model"
    mlflow.sklearn.save_model(estimator, path, signature=infer_signature(frame, estimator.predict(frame)))
    return path


@pytest.fixture(scope="module")
def sklearn_model(sklearn_dir) -> PyFuncModel:
    return mlflow.pyfunc.load_model(str(sklearn_dir))


def test_flavor_predict_is_what_pyfunc_predict_calls_once_the_schema_is_enforced(sklearn_model, frame, monkeypatch):
    direct = mlflow_internals.flavor_predict(sklearn_model)
    np.testing.assert_array_equal(direct(frame), sklearn_model.predict(frame))
    seen = []

    def spy(data):
        seen.append(data)
        return direct(data)

    monkeypatch.setattr(sklearn_model, "_predict_fn", spy)
    assert mlflow_internals.flavor_predict(sklearn_model) is spy
    sklearn_model.predict(frame)
    assert len(seen) == 1 and list(seen[0].columns) == ["a", "b"]


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, model_input: list[str], params=None) -> list[str]:
        return model_input


def test_a_signature_from_type_hints_is_told_apart(sklearn_model, tmp_path):
    mlflow.pyfunc.save_model(tmp_path / "hinted", python_model=Echo(), pip_requirements=[])
    assert mlflow_internals.signature_from_type_hints(mlflow.pyfunc.load_model(str(tmp_path / "hinted")))
    assert not mlflow_internals.signature_from_type_hints(sklearn_model)


def test_the_latest_schema_revision_is_the_head_of_mlflows_migrations_and_what_a_new_database_gets(tmp_path):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    head = mlflow_internals.latest_schema_revision()
    config = mlflow_internals.alembic_config("sqlite://")
    assert config.get_main_option("script_location").startswith(str(mlflow.__path__[0]))
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_heads() == [head] and scripts.get_revision(head) is not None
    url = f"sqlite:///{tmp_path / 'tracking.db'}"
    SqlAlchemyStore(url, str(tmp_path / "artifacts"))  # creates the schema, as `mlflow db upgrade` would
    with sqlite3.connect(tmp_path / "tracking.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


# MLServer -----------------------------------------------------------------------------------------


class Probe(MLModel):
    """A model with nothing to load, answering one number."""

    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        return InferenceResponse(model_name=self.name, outputs=[ResponseOutput(name="y", shape=[1], datatype="FP64", data=[1.0])])


def server_settings(tmp_path) -> Settings:
    return Settings(debug=False, parallel_workers=0, metrics_endpoint="/metrics", model_repository_root=str(tmp_path))


@asynccontextmanager
async def built(server_class, *args):
    """An MLServer built (not started) in a running event loop, as the model API builds it; its
    data plane's Prometheus metrics are unregistered afterwards, so another one can be built."""
    server = server_class(*args)
    try:
        yield server
    finally:
        plane = mlserver_internals.data_plane(server)
        # Each DataPlane registers its three metrics in prometheus_client's default registry.
        for metric in (*mlserver_internals.infer_metrics(plane), plane._ModelInferRequestFailure):
            prometheus_client.REGISTRY.unregister(metric)


def test_the_servers_parts_are_reached(tmp_path):
    async def check():
        async with built(MLServer, server_settings(tmp_path)) as server:
            assert isinstance(mlserver_internals.rest_app(server), FastAPI)
            assert isinstance(mlserver_internals.data_plane(server), DataPlane)
            assert isinstance(mlserver_internals.model_registry(server), MultiModelRegistry)

    asyncio.run(check())


def test_exception_handlers_installed_before_the_server_is_built_are_its_apps():
    class ProbeError(Exception):
        pass

    async def handler(request, exc):
        return None

    async def check():
        mlserver_internals.install_exception_handlers({ProbeError: handler})
        async with built(MLServer, Settings(debug=False, parallel_workers=0)) as server:
            assert mlserver_internals.rest_app(server).exception_handlers[ProbeError] is handler

    asyncio.run(check())


def test_the_wrapped_app_is_the_one_uvicorn_is_given(tmp_path):
    assert "self._get_config()" in inspect.getsource(RESTServer.start)  # the config the REST server starts with

    async def check():
        async with built(mlserver_server.LabMLServer, server_settings(tmp_path), True) as server:
            config = server._rest_server._get_config()
            assert isinstance(config, uvicorn.Config) and isinstance(config.app, FastPath)
            assert config.app.app is mlserver_internals.rest_app(server)

    asyncio.run(check())


def test_load_hooks_run_on_a_first_load_and_reload_hooks_when_a_model_is_replaced(tmp_path):
    calls = []

    async def on_load(model):
        calls.append(("load", model))
        return model

    async def on_reload(old, new):
        calls.append(("reload", old, new))
        return new

    async def check():
        async with built(MLServer, server_settings(tmp_path)) as server:
            load_hooks, reload_hooks = mlserver_internals.model_hooks(server)
            assert load_batching in load_hooks  # what the lab's LabMLServer replaces
            load_hooks.append(on_load)
            reload_hooks.append(on_reload)
            registry = mlserver_internals.model_registry(server)
            first = await registry.load(ModelSettings(name="probe", implementation=Probe))
            second = await registry.load(
                ModelSettings(name="probe", implementation=Probe, parameters=ModelParameters(extra={"n": 2}))
            )
            assert calls == [("load", first), ("reload", first, second)]

    asyncio.run(check())


def test_infer_metrics_and_cloudevents_headers_are_the_ones_mlserver_gives_its_answers(tmp_path):
    def sample(name: str) -> float:
        return prometheus_client.REGISTRY.get_sample_value(name, {"model": "probe", "version": "None"}) or 0.0

    async def check():
        settings = server_settings(tmp_path)
        async with built(MLServer, settings) as server:
            model = await mlserver_internals.model_registry(server).load(ModelSettings(name="probe", implementation=Probe))
            success, duration = mlserver_internals.infer_metrics(mlserver_internals.data_plane(server))
            assert [m.name for m in (*success.collect(), *duration.collect())] == [
                "model_infer_request_success",
                "model_infer_request_duration",
            ]
            before = sample("model_infer_request_success_total"), sample("model_infer_request_duration_count")
            request = InferenceRequest(id="r-1", inputs=[RequestInput(name="x", shape=[1], datatype="FP64", data=[0.5])])
            response = await mlserver_internals.data_plane(server).infer(request, "probe")
            after = sample("model_infer_request_success_total"), sample("model_infer_request_duration_count")
            assert after == (before[0] + 1, before[1] + 1)  # what the fast path counts as MLServer would
            headers = mlserver_internals.cloudevents_headers(settings)(CloudEventsTypes.Response, model.settings, "r-1")
            assert headers == response.parameters.headers and headers["Ce-Id"] == "r-1"

    asyncio.run(check())


def test_health_asks_the_data_planes_ready_on_each_request(tmp_path, sklearn_dir):
    """One-model containers answer /v2/health/ready (and /ping) from their one model's readiness."""

    def route(server, path):
        return next(r for r in mlserver_internals.rest_app(server).routes if getattr(r, "path", None) == path)

    async def check():
        settings = one_model.model_settings("wine", sklearn_dir, "3")
        async with built(one_model.OneModelServer, server_settings(tmp_path), settings) as server:
            assert (await route(server, "/v2/health/ready").endpoint()).status_code == 400
            assert (await route(server, "/ping").endpoint()).status_code == 503
            await server.load()
            assert (await route(server, "/v2/health/ready").endpoint()).status_code == 200
            assert (await route(server, "/ping").endpoint()).status_code == 200

    asyncio.run(check())


def test_raw_body_is_the_dependency_mlflowruntime_reads_its_body_with():
    assert inspect.signature(MLflowRuntime.invocations).parameters["raw_body"].default.dependency is mlserver_internals.raw_body
    sent = [{"type": "http.request", "body": '{"é": 1}'.encode(), "more_body": False}]

    async def receive():
        return sent.pop(0)

    request = Request({"type": "http", "method": "POST", "path": "/", "headers": []}, receive)
    assert asyncio.run(mlserver_internals.raw_body(request)) == '{"é": 1}'


def test_mlflowruntime_predicts_with_the_model_put_in_its_place(sklearn_dir, frame):
    class Spy:
        def __init__(self, model):
            self.model, self.calls = model, 0
            self.metadata = model.metadata

        def predict(self, data, params=None):
            self.calls += 1
            return self.model.predict(data, params=params)

    async def check():
        runtime = MLflowRuntime(
            ModelSettings(name="m", implementation=MLflowRuntime, parameters=ModelParameters(uri=str(sklearn_dir)))
        )
        await runtime.load()
        loaded = mlserver_internals.loaded_pyfunc(runtime)
        assert isinstance(loaded, PyFuncModel)
        spy = Spy(loaded)
        mlserver_internals.predict_through(runtime, spy)
        body = json.dumps({"dataframe_split": json.loads(frame.head(2).to_json(orient="split", index=False))})
        await runtime.invocations(raw_body=body, content_type="application/json")
        columns = [RequestInput(name=c, shape=[2], datatype="FP64", data=frame[c].head(2).tolist()) for c in frame.columns]
        await runtime.predict(InferenceRequest(inputs=columns))
        assert spy.calls == 2

    asyncio.run(check())


PROBE_MODULE = """
from mlserver import MLModel
from mlflow_lab.adapters import mlserver_internals

kept = mlserver_internals.kept_across_reloads(globals(), "kept", {})
plain = {}


class Probe(MLModel):
    pass
"""


def test_a_global_kept_across_reloads_survives_mlserver_reading_model_settings(tmp_path, monkeypatch):
    """MLServer re-executes a model's implementation module each time it reads the model's
    model-settings.json (the follower writes one per promotion): runtime.serving must survive that."""
    folder = tmp_path / "probe"
    folder.mkdir()
    (folder / "lab_reload_probe.py").write_text(PROBE_MODULE)
    (folder / "model-settings.json").write_text(json.dumps({"name": "probe", "implementation": "lab_reload_probe.Probe"}))
    monkeypatch.delitem(sys.modules, "lab_reload_probe", raising=False)
    first = load_model_settings(str(folder / "model-settings.json")).implementation
    module = sys.modules["lab_reload_probe"]
    kept = module.kept
    kept["x"], module.plain["x"] = 1, 1
    again = load_model_settings(str(folder / "model-settings.json")).implementation
    assert again is not first  # MLServer ran the module again
    assert module.kept is kept and kept == {"x": 1}
    assert module.plain == {}  # what an ordinary global comes back as
    monkeypatch.delitem(sys.modules, "lab_reload_probe")
