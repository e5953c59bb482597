"""The model API through nginx: both protocols, the registry followed without downtime, bad requests."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from mlserver.grpc import converters, dataplane_pb2_grpc, model_repository_pb2, model_repository_pb2_grpc
from mlserver.types import InferenceRequest

from mlflow_lab.jobs import promote, sample_input, train_psystock, train_wine
from mlflow_lab.testing.ports import free_ports
from mlflow_lab.testing.stacks import extra_model_api
from tests.stack.payloads import v2_body

pytestmark = pytest.mark.stack
WINE, STOCK = "wine-quality", "psystock"  # the names the lab's model API serves (MODEL_API_MODELS)
FOLLOW_BOUND_S = 60  # poll interval (5 s) + loading a version in the worker, with CI headroom


def wait_for_version(lab, name: str, version: str, timeout: float = FOLLOW_BOUND_S) -> float:
    """Seconds until the API answers for `name` with `version`."""
    session, started = lab.session(), time.monotonic()
    body = v2_body(sample_input.build(name, rows=1, seed=0))
    while time.monotonic() - started < timeout:
        response = session.post(f"{lab.url}/v2/models/{name}/infer", json=body)
        if response.ok and response.json()["model_version"] == version:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{name} version {version} not served within {timeout} s")


@pytest.fixture(scope="module")
def served(lab, mlflow_client):
    """wine-quality v1 (default params) and psystock v1 in Production; v2 of wine (tuned) registered."""
    train_wine.train(experiment=WINE, register_as=WINE, n_iter=2)
    train_psystock.train(experiment=STOCK, register_as=STOCK, days=600, n_estimators=30)
    for name in (WINE, STOCK):
        promote.promote(mlflow_client, name, "1", force=True)
        wait_for_version(lab, name, "1")
    return mlflow_client


def in_process(name: str, version: str, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(frame), dtype="float64").reshape(-1)


@pytest.mark.parametrize("name", [WINE, STOCK])
def test_v2_and_invocations_formats_match_in_process_predict(lab, served, name):
    frame = sample_input.build(name, rows=25, seed=5)
    expected = in_process(name, "1", frame)
    session = lab.session()

    v2 = session.post(f"{lab.url}/v2/models/{name}/infer", json=v2_body(frame))
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == "1"
    np.testing.assert_allclose(np.asarray(v2.json()["outputs"][0]["data"], dtype="float64"), expected, rtol=1e-6)

    url = f"{lab.url}/models/{name}/invocations"
    records = json.loads(frame.to_json(orient="records"))
    bodies = {
        "dataframe_split": {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": {column: frame[column].tolist() for column in frame.columns}},
    }
    for form, body in bodies.items():
        response = session.post(url, json=body)
        assert response.status_code == 200, (form, response.text)
        assert response.headers["X-Model-Version"] == "1"
        np.testing.assert_allclose(np.asarray(response.json()["predictions"], dtype="float64"), expected, rtol=1e-6, err_msg=form)
    csv = session.post(url, data=frame.to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert csv.status_code == 200, csv.text
    np.testing.assert_allclose(np.asarray(csv.json()["predictions"], dtype="float64"), expected, rtol=1e-6)


@pytest.mark.contract  # the runner's model API answers after a promotion (the `served` fixture)
def test_metadata_shows_the_served_version(lab, served):
    metadata = lab.session().get(f"{lab.url}/v2/models/{WINE}").json()
    assert metadata["versions"] == ["1"] and metadata["platform"] == "mlflow"
    assert {tensor["name"] for tensor in metadata["inputs"]} == set(sample_input.build(WINE, 1, 0).columns)


def test_grpc_infer_through_nginx_with_credentials(lab, served):
    lab.require_internals()  # the gRPC port is the stack's second published nginx port
    frame = sample_input.build(WINE, rows=4, seed=9)
    request = converters.ModelInferRequestConverter.from_types(InferenceRequest.model_validate(v2_body(frame)), model_name=WINE)
    token = base64.b64encode(f"{lab.user}:{lab.password}".encode()).decode()
    with grpc.insecure_channel(f"127.0.0.1:{lab.settings['LAB_GRPC_PORT']}") as channel:
        stub = dataplane_pb2_grpc.GRPCInferenceServiceStub(channel)
        reply = stub.ModelInfer(request, metadata=[("authorization", f"Basic {token}")], timeout=30)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(request, timeout=30)
        with pytest.raises(grpc.RpcError) as closed:  # load and unload are the lab's, for no account
            model_repository_pb2_grpc.ModelRepositoryServiceStub(channel).RepositoryIndex(
                model_repository_pb2.RepositoryIndexRequest(), metadata=[("authorization", f"Basic {token}")], timeout=30
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert closed.value.code() == grpc.StatusCode.PERMISSION_DENIED
    response = converters.ModelInferResponseConverter.to_types(reply)
    assert response.model_version == "1"
    np.testing.assert_allclose(np.asarray(response.outputs[0].data, dtype="float64"), in_process(WINE, "1", frame), rtol=1e-6)


def test_credentials_required_except_health_and_readiness(lab, served):
    anonymous = lab.session(auth=False)
    body = v2_body(sample_input.build(WINE, 1, 0))
    assert anonymous.post(f"{lab.url}/v2/models/{WINE}/infer", json=body).status_code == 401
    assert anonymous.post(f"{lab.url}/models/{WINE}/invocations", json={"instances": []}).status_code == 401
    assert anonymous.get(f"{lab.url}/v2/models/{WINE}").status_code == 401
    for path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{WINE}/ready", f"/v2/models/{STOCK}/ready"):
        assert anonymous.get(f"{lab.url}{path}").status_code == 200, path


def test_prometheus_metrics_inside_the_stack(lab, served):
    lab.session().post(f"{lab.url}/v2/models/{WINE}/infer", json=v2_body(sample_input.build(WINE, 1, 0)))
    assert "model_infer_request_success" in _metrics(lab)


MARKER = 987654.125  # a value that must never be echoed back in an error


def _wine_rows() -> pd.DataFrame:
    frame = sample_input.build(WINE, rows=3, seed=2)
    frame.loc[0, "alcohol"] = MARKER
    return frame


def _split(frame: pd.DataFrame) -> dict:
    return {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}


BAD_REQUESTS = {
    # case: (path, body (dict -> JSON, str -> raw), content type, expected status)
    "malformed JSON, invocations": (
        f"/models/{WINE}/invocations",
        '{"dataframe_split": {"columns": [' + str(MARKER),
        "application/json",
        400,
    ),
    "malformed JSON, V2": (f"/v2/models/{WINE}/infer", '{"inputs": [' + str(MARKER), "application/json", 422),
    "wrong content type, invocations": (f"/models/{WINE}/invocations", json.dumps(_split(_wine_rows())), "text/plain", 400),
    "wrong content type, V2": (f"/v2/models/{WINE}/infer", json.dumps(v2_body(_wine_rows())), "text/plain", 422),
    "missing column": (f"/models/{WINE}/invocations", _split(_wine_rows().drop(columns="proline")), "application/json", 400),
    "missing column, V2": (f"/v2/models/{WINE}/infer", v2_body(_wine_rows().drop(columns="proline")), "application/json", 400),
    "extra column": (f"/models/{WINE}/invocations", _split(_wine_rows().assign(colour=1.0)), "application/json", 400),
    "extra column, V2": (f"/v2/models/{WINE}/infer", v2_body(_wine_rows().assign(colour=1.0)), "application/json", 400),
    "wrong dtype": (
        f"/models/{WINE}/invocations",
        _split(_wine_rows().astype({"ash": object}).assign(ash=["low", "mid", "high"])),
        "application/json",
        400,
    ),
    "NaN in an integer column": (
        f"/models/{STOCK}/invocations",
        _split(sample_input.build(STOCK, 3, 1).astype("float64").assign(move_1=[np.nan, 1.0, MARKER])),
        "application/json",
        400,
    ),
    "empty batch": (f"/models/{WINE}/invocations", _split(_wine_rows().head(0)), "application/json", 400),
    "empty batch, V2": (f"/v2/models/{WINE}/infer", v2_body(_wine_rows().head(0)), "application/json", 400),
    "unknown model, V2": ("/v2/models/no-such-model/infer", v2_body(_wine_rows()), "application/json", 404),
    "unknown model, invocations": ("/models/no-such-model/invocations", _split(_wine_rows()), "application/json", 404),
    "body over the limit": (f"/models/{WINE}/invocations", "x" * (6 << 20), "application/json", 413),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_short_json_error_and_the_server_keeps_serving(lab, served, case):
    path, body, content_type, status = BAD_REQUESTS[case]
    session = lab.session()
    data = body if isinstance(body, str) else json.dumps(body)
    response = session.post(f"{lab.url}{path}", data=data, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text[:500]
    error = response.json()
    assert list(error) == ["error"], response.text[:600]
    message = error["error"]
    assert isinstance(message, str) and message and len(response.text) < 600, response.text[:600]
    assert "Traceback" not in response.text and str(MARKER) not in response.text
    good = session.post(f"{lab.url}/models/{WINE}/invocations", json=_split(sample_input.build(WINE, 2, 0)))
    assert good.status_code == 200, good.text


@pytest.mark.parametrize(
    "method, path, expected",
    [
        ("POST", "/models/no-such-model/invocations", "no model 'no-such-model' is served here"),
        ("POST", "/v2/models/no-such-model/infer", "no model 'no-such-model' is served here"),
        ("GET", "/v2/models/no-such-model", "no model 'no-such-model' is served here"),
        ("GET", "/v2/no-such-path", "no such path: /v2/no-such-path"),
    ],
)
def test_every_404_of_the_model_api_is_the_labs_json_error(lab, served, method, path, expected):
    body = v2_body(_wine_rows()) if path.startswith("/v2/") else _split(_wine_rows())
    response = lab.session().request(method, f"{lab.url}{path}", json=body)
    assert response.status_code == 404
    assert response.json() == {"error": expected}


def _metrics(lab) -> str:
    host, port = lab.address("model-api", "MODEL_API_METRICS_PORT")
    return requests.get(f"http://{host}:{port}/metrics", timeout=10).text


def _version_gauge(lab, metric: str, name: str) -> str | None:
    """A version the model API reports on /metrics (what the monitoring alerts read)."""
    found = re.search(rf'^mlflow_lab_model_{metric}_version{{model="{name}"}} (\S+)$', _metrics(lab), re.MULTILINE)
    return str(int(float(found.group(1)))) if found else None


def _batched_requests(lab, name: str) -> float:
    """How many V2 requests went through the model's adaptive batcher (MLServer's own counter)."""
    found = re.search(rf'^batch_request_queue_count{{model_name="{name}"[^}}]*}} (\S+)$', _metrics(lab), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_promotion_is_followed_without_a_failed_request(lab, served):
    """Clients keep sending, in both protocols, while version 2 is promoted: none fails, version 2
    answers within the bound, and V2 requests are still batched afterwards."""
    frame = sample_input.build(WINE, 2, 0)
    targets = {
        "invocations": (f"{lab.url}/models/{WINE}/invocations", _split(frame)),
        "V2": (f"{lab.url}/v2/models/{WINE}/infer", v2_body(frame)),
    }
    seen, failures, stop = [], [], threading.Event()

    def client(protocol: str) -> None:
        session, (url, body) = lab.session(), targets[protocol]
        while not stop.is_set():
            response = session.post(url, json=body)
            if response.status_code != 200:
                failures.append((protocol, response.status_code, response.text[:200]))
            else:
                version = response.headers["X-Model-Version"] if protocol == "invocations" else response.json()["model_version"]
                seen.append((time.monotonic(), protocol, version))

    threads = [threading.Thread(target=client, args=(protocol,)) for protocol in targets]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        promoted_at = time.monotonic()
        assert promote.promote(served, WINE, "2", force=True).promoted
        deadline = promoted_at + FOLLOW_BOUND_S
        while time.monotonic() < deadline and {p for _, p, version in seen if version == "2"} != set(targets):
            time.sleep(0.2)
        time.sleep(2)  # keep sending after the swap: the old version is being unloaded now
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    for protocol in targets:
        switched = [t for t, p, version in seen if p == protocol and version == "2"]
        assert switched, f"{protocol}: version 2 was not served within {FOLLOW_BOUND_S} s"
        assert all(version == "2" for t, p, version in seen if p == protocol and t > switched[0] + 1), (
            f"{protocol}: answers went back to version 1"
        )

    rows_per_batch = lab.require_internals().settings.int("MODEL_API_MAX_BATCH_SIZE")
    assert rows_per_batch > 1, "the lab's defaults batch V2 requests"
    before, (url, body), session = _batched_requests(lab, WINE), targets["V2"], lab.session()
    for _ in range(5):
        assert session.post(url, json=body).json()["model_version"] == "2"
    assert _batched_requests(lab, WINE) == before + 5, "V2 requests to the promoted version bypass the batcher"
    # A request that fills a batch on its own goes straight to the model.
    assert session.post(url, json=v2_body(sample_input.build(WINE, rows_per_batch, 1))).ok
    assert _batched_requests(lab, WINE) == before + 5, "a full-batch request went through the batcher"


def test_a_version_that_cannot_load_leaves_the_old_one_serving(lab, served):
    client, current = served, "2"
    lab.require_internals()
    wait_for_version(lab, WINE, current)
    run = client.create_run(client.get_experiment_by_name(WINE).experiment_id)
    client.log_metric(run.info.run_id, "test_rmse", 0.01)  # looks like the best version yet
    broken = client.create_model_version(WINE, f"{run.info.artifact_uri}/no-model-here", run.info.run_id)
    assert promote.promote(client, WINE, broken.version, force=True).promoted
    time.sleep(15)  # three polls: the follower tries, fails, and keeps the old version
    response = lab.session().post(f"{lab.url}/models/{WINE}/invocations", json=_split(sample_input.build(WINE, 2, 0)))
    assert response.status_code == 200 and response.headers["X-Model-Version"] == current
    assert f"version {broken.version} failed to load, still serving {current}" in lab.log_tail("model-api", 400)
    # What the ModelApiServingStaleVersion alert reads: the registry names one, the API serves another.
    assert (_version_gauge(lab, "served", WINE), _version_gauge(lab, "registry", WINE)) == (current, broken.version)
    promote.promote(client, WINE, current, force=True)  # leave Production servable for whoever runs next


@pytest.mark.contract("native")  # a second host process of the same entrypoint
def test_model_server_mlflow_serves_the_same_predictions(lab, served):
    """MODEL_SERVER=mlflow: the same entrypoint on MLflow's scoring server (started beside the API here)."""
    stack = lab.require("native")  # a second host process of the same entrypoint
    port = free_ports(1)[0]
    base = f"http://127.0.0.1:{port}"
    overrides = {"MODEL_SERVER": "mlflow", "MODEL_API_PORT": str(port), "MODEL_API_WORKERS": "1"}
    with extra_model_api(stack, overrides, f"{base}/v2/models/{WINE}/ready", timeout=120):
        frame = sample_input.build(WINE, rows=10, seed=4)
        response = requests.post(f"{base}/models/{WINE}/invocations", json=_split(frame), timeout=30)
        assert response.status_code == 200, response.text
        served_version = response.headers["X-Model-Version"]
        np.testing.assert_allclose(
            np.asarray(response.json()["predictions"], dtype="float64"), in_process(WINE, served_version, frame), rtol=1e-9
        )
        through_mlserver = lab.session().post(f"{lab.url}/models/{WINE}/invocations", json=_split(frame))
        assert through_mlserver.headers["X-Model-Version"] == served_version
        np.testing.assert_allclose(through_mlserver.json()["predictions"], response.json()["predictions"], rtol=1e-9)


def test_the_kserve_tutorials_v2_request_is_accepted_and_wrong_tensors_still_refused(lab, served):
    """The MLflow -> KServe tutorial: a model trained on a plain float64 array (tensor signature
    (-1, 13)), asked with one unnamed 1-D FP32 tensor, as stock MLServer + mlserver-mlflow is."""
    from mlflow.models import infer_signature
    from sklearn.datasets import load_wine
    from sklearn.linear_model import ElasticNet

    client = served
    features, target = load_wine(return_X_y=True)
    model = ElasticNet(alpha=0.5, l1_ratio=0.5).fit(features, target)
    with mlflow.start_run(experiment_id=client.get_experiment_by_name(WINE).experiment_id):
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(features, model.predict(features)))
    version = mlflow.register_model(info.model_uri, WINE).version
    current = promote.current_production(client, WINE)
    assert promote.promote(client, WINE, version, force=True).promoted
    session, url = lab.session(), f"{lab.url}/v2/models/{WINE}/infer"

    def tensor(rows: np.ndarray, shape: list[int], datatype: str) -> dict:
        return {"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": rows.reshape(-1).tolist()}]}

    tutorial = tensor(features[0], [13], "FP32")
    try:
        deadline = time.monotonic() + FOLLOW_BOUND_S
        while (response := session.post(url, json=tutorial)).json().get("model_version") != version:
            assert time.monotonic() < deadline, f"version {version} not served: {response.text[:300]}"
            time.sleep(0.5)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["outputs"][0]["data"], model.predict(features[:1]), rtol=1e-12)
        # Several one-row tensors at once: each answered for its own row (not merged by the batcher).
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: session.post(url, json=tensor(features[i], [13], "FP32")), range(8)))
        assert [a.status_code for a in answers] == [200] * 8
        np.testing.assert_allclose([a.json()["outputs"][0]["data"][0] for a in answers], model.predict(features[:8]), rtol=1e-12)
        two_rows = session.post(url, json=tensor(features[:2], [2, 13], "FP64"))
        np.testing.assert_allclose(two_rows.json()["outputs"][0]["data"], model.predict(features[:2]), rtol=1e-12)
        for wrong, reason in (
            (tensor(features[0][:12], [12], "FP64"), "Shape of input"),
            (tensor(features[0].round(), [1, 13], "INT64"), "dtype of input int64"),
            (tensor(features[:2], [26], "FP32"), "Shape of input"),
        ):
            refused = session.post(url, json=wrong)
            assert refused.status_code == 400 and reason in refused.json()["error"], refused.text
    finally:
        promote.promote(client, WINE, current, force=True)  # leave the lab's model in Production for whoever runs next
        wait_for_version(lab, WINE, current)


def test_model_api_down_leaves_tracking_up_and_answers_json_503(lab):
    stack = lab.require_internals()
    search = f"{lab.url}/api/2.0/mlflow/experiments/search?max_results=1"
    stack.stop_service("model-api")
    try:
        session = lab.session()
        assert session.get(search, timeout=10).status_code == 200
        for method, path in (
            ("post", "/models/wine-quality/invocations"),
            ("post", "/v2/models/wine-quality/infer"),
            ("get", "/v2/health/ready"),
        ):
            # Within nginx's resolver cache (valid=5s) it still tries the old address: 503 after
            # its 10 s connect timeout at worst.
            response = session.request(method, lab.url + path, json={}, timeout=30)
            assert response.status_code == 503, (path, response.text)
            assert "model API is not available" in response.json()["error"] and len(response.text) < 200
        stack.restart("nginx")  # nginx itself restarts fine while the model API is away (no lookup at start)
        assert session.get(search, timeout=10).status_code == 200
    finally:
        stack.start_service("model-api")
    # Back: ready once it has loaded its models again (MLServer answers 400 until then).
    deadline = time.monotonic() + 60
    while (
        ready := lab.session().get(f"{lab.url}/v2/health/ready", timeout=10)
    ).status_code != 200 and time.monotonic() < deadline:
        time.sleep(1)
    assert ready.status_code == 200
