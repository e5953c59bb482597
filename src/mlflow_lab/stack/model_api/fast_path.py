"""MODEL_SERVER=lab (the default): a lean front for the two hot routes, in front of MLServer.

MLServer's Python front end costs ~1.5 ms of CPU per request (FastAPI routing, pydantic
validation of every number, its batcher's queues, a DataFrame per request), more than the
prediction. This ASGI front takes `POST /v2/models/<name>/infer` and
`POST /models/<name>/invocations` when the request is the common, well-formed kind:

- the JSON body is decoded (orjson) straight into one numpy array per input column, checked
  against the model's signature (names, and types that need no judgement);
- requests that arrived together, in both protocols, are merged into one DataFrame and
  predicted in one call of the pyfunc model MLServer loaded (for sklearn and xgboost models,
  without enforcing the schema a second time: the frame already conforms), then split and
  answered as MLServer would answer them
  (same body, `X-Model-Version`, CloudEvents headers, MLServer's metrics);
- anything else (other content types, CSV, `params`, tensor models, text, a column the model
  lacks, a batch the model refuses) is handed to MLServer untouched, so every error and every
  rarer input form is answered exactly as under MODEL_SERVER=mlserver.

It needs the model in the server process (MODEL_API_WORKERS=0); with workers it passes
everything to MLServer. gRPC, metadata, health, repository calls and metrics stay MLServer's.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
from mlserver import metrics as mlserver_metrics
from mlserver.cloudevents import CloudEventsTypes
from mlserver.codecs.numpy import to_datatype
from mlserver.settings import Settings as ServerSettings

from mlflow_lab.adapters import mlserver_internals
from mlflow_lab.stack.model_api import runtime

_ROUTE = re.compile(r"^/(v2/models|models)/([^/]+)/(infer|invocations)$")
# Signatures decoded here: conforming.signature_dtypes (required double and long columns);
# others (tensors, strings, dates, optional columns) go to MLServer.
_ACCEPTED_KINDS = {np.dtype("float64"): "fi", np.dtype("int64"): "i"}  # JSON numbers a column takes
JSON = [(b"content-type", b"application/json")]


class Refused(Exception):
    """The fast path does not take this request; MLServer answers it."""


def _column(values: Any, dtype: np.dtype) -> np.ndarray:
    if type(values) is not list or not values:
        raise Refused
    return _typed(np.array(values), dtype)


def _typed(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if array.ndim != 1 or array.dtype.kind not in _ACCEPTED_KINDS[dtype]:
        raise Refused  # text, booleans, nulls, nested lists: MLflow's parser decides
    return array.astype(dtype, copy=False)


def decode_v2(body: Any, columns: dict[str, np.dtype]) -> dict[str, np.ndarray]:
    if type(body) is not dict or body.keys() - {"inputs", "id"} or type(body.get("inputs")) is not list:
        raise Refused
    if type(body.get("id", "")) is not str:
        raise Refused
    decoded: dict[str, np.ndarray] = {}
    for tensor in body["inputs"]:
        if type(tensor) is not dict or tensor.keys() != {"name", "shape", "datatype", "data"}:
            raise Refused
        name, shape = tensor["name"], tensor["shape"]
        dtype = columns.get(name)
        if dtype is None or name in decoded or tensor["datatype"] != to_datatype(dtype).value:
            raise Refused
        array = _column(tensor["data"], dtype)
        if shape != [len(array)]:
            raise Refused
        decoded[name] = array
    return decoded


def decode_invocations(body: Any, columns: dict[str, np.dtype]) -> dict[str, np.ndarray]:
    """`dataframe_split` (columns + data) and `dataframe_records`, MLflow's two DataFrame forms."""
    if type(body) is not dict or len(body) != 1:
        raise Refused
    if type(split := body.get("dataframe_split")) is dict:
        names, rows = split.get("columns"), split.get("data")
        if split.keys() != {"columns", "data"} or type(names) is not list or type(rows) is not list or not rows:
            raise Refused
        if any(type(row) is not list or len(row) != len(names) for row in rows):
            raise Refused
        table = np.array(rows)  # one pass over the numbers, then one column at a time
        if table.ndim != 2 or table.dtype.kind not in "fi":
            raise Refused
        values = [table[:, i] for i in range(len(names))]
    elif type(records := body.get("dataframe_records")) is list and records and type(records[0]) is dict:
        names = list(records[0])
        if any(type(record) is not dict or record.keys() != records[0].keys() for record in records):
            raise Refused
        values = [np.array([record[name] for record in records]) for name in names]
    else:
        raise Refused
    if len(set(names)) != len(names):
        raise Refused
    decoded = {}
    for name, column in zip(names, values, strict=True):
        if type(name) is not str or name not in columns:
            raise Refused
        decoded[name] = _typed(column, columns[name])
    return decoded


@dataclass
class _Request:
    columns: dict[str, np.ndarray]
    rows: int
    answer: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    """Merges the requests for one loaded model version that arrive together, up to `max_requests`.

    Keep-alive clients' requests are read in the same turn of the event loop, so a flush on
    the next turn gathers them without waiting. Requests that each come on a new connection
    (through nginx, which keeps no connection to the API open) are read one per turn, and are
    gathered only by waiting `max_wait`, as MLServer's batcher always does. So the batcher
    waits only while waiting pays: every PROBE_EVERY-th lone request waits once, and waiting
    goes on while the waits gather more than one request. A lone client never waits, but for
    that probe.
    """

    PROBE_EVERY = 16

    def __init__(self, model: runtime.LabMLflowRuntime, columns: dict[str, np.dtype], max_requests: int, max_wait: float):
        self.model, self.columns, self.max_requests, self.max_wait = model, columns, max(1, max_requests), max_wait
        self.pending: list[_Request] = []
        self.waiting, self.lone = False, 0

    def predict(self, columns: dict[str, np.ndarray], rows: int) -> asyncio.Future:
        request = _Request(columns, rows)
        if rows >= self.max_requests:  # a batch's worth on its own: merging would only cost
            self._run([request])
            return request.answer
        if not self.pending:
            loop = asyncio.get_running_loop()
            if self.waiting or self.lone >= self.PROBE_EVERY:
                loop.call_later(self.max_wait, self._flush, True)
            else:
                loop.call_soon(self._flush, False)
        self.pending.append(request)
        if len(self.pending) >= self.max_requests:
            self._flush(self.waiting)
        return request.answer

    def _flush(self, waited: bool) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        if waited:
            self.waiting, self.lone = len(batch) > 1, 0
        elif len(batch) == 1:
            self.lone += 1
        self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        if len(batch) == 1:
            frame = pd.DataFrame(batch[0].columns, columns=list(self.columns))
        else:
            frame = pd.DataFrame({name: np.concatenate([r.columns[name] for r in batch]) for name in self.columns})
        try:
            predictions = self.model.checked_model.predict_conforming(frame)
            # Other outputs (DataFrames, dicts, text) are encoded by MLServer's and MLflow's codecs.
            if not isinstance(predictions, np.ndarray) or predictions.dtype.kind not in "fiub" or predictions.ndim not in (1, 2):
                raise Refused
            if len(predictions) != len(frame):
                raise Refused
        except Exception as exc:  # noqa: BLE001 - each request is asked again alone, through MLServer
            for request in batch:
                request.answer.set_exception(Refused(str(exc)))
            return
        start = 0
        for request in batch:
            request.answer.set_result(predictions[start : start + request.rows])
            start += request.rows


class FastPath:
    """ASGI app: the hot routes here when it can, everything else to MLServer's app."""

    def __init__(self, app, server_settings: ServerSettings, data_plane):
        self.app = app
        self.batchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.cloudevents_headers = mlserver_internals.cloudevents_headers(server_settings)
        self.success, self.duration = mlserver_internals.infer_metrics(data_plane)
        self.queue = mlserver_metrics.register("batch_request_queue", "counter of request queue batch size")

    async def __call__(self, scope, receive, send) -> None:
        target = self._target(scope)
        if target is None:
            return await self.app(scope, receive, send)
        model, batcher, v2 = target
        body = await _read_body(receive)
        started = time.perf_counter()
        try:
            parsed, predictions = await self._predict(body, model, batcher, v2)
        except (Refused, orjson.JSONDecodeError, ValueError, TypeError, KeyError):
            return await self.app(scope, _replaying(body, receive), send)
        if v2:
            await self._answer_v2(send, model, parsed.get("id"), predictions)
            self.duration.labels(model=model.name, version=None).observe(time.perf_counter() - started)
            self.success.labels(model=model.name, version=None).inc()
        else:
            content = orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)
            await _send(send, content, [*JSON, (b"x-model-version", model.registry_version.encode())])

    def _target(self, scope) -> tuple[runtime.LabMLflowRuntime, Batcher, bool] | None:
        """(model, its batcher, V2?) when the request is one this path may take."""
        if scope["type"] != "http" or scope["method"] != "POST" or _content_type(scope) != b"application/json":
            return None
        found = _ROUTE.match(scope["path"])
        if found is None or (found[1] == "models") != (found[3] == "invocations"):
            return None
        model = runtime.serving.get(found[2])  # the version ready in this process, if any
        batcher = self._batcher(model) if model is not None else None
        return (model, batcher, found[1] == "v2/models") if model is not None and batcher is not None else None

    async def _predict(self, body: bytes, model, batcher: Batcher, v2: bool) -> tuple[dict, np.ndarray]:
        if b"true" in body or b"false" in body:
            raise Refused  # numpy would read a JSON boolean among numbers as 1 or 0; MLflow decides
        parsed = orjson.loads(body)
        columns = (decode_v2 if v2 else decode_invocations)(parsed, batcher.columns)
        if columns.keys() != batcher.columns.keys():
            raise Refused
        rows = len(next(iter(columns.values())))
        if any(len(array) != rows for array in columns.values()):
            raise Refused
        if v2 and rows < batcher.max_requests:  # MLServer's metric of requests entering its batcher
            # labelled as MLServer labels it (model_context): the settings' version, "" for ours
            self.queue.labels(model_name=model.name, model_version=model.settings.version or "").observe(len(batcher.pending))
        return parsed, await batcher.predict(columns, rows)

    def _batcher(self, model: runtime.LabMLflowRuntime) -> Batcher | None:
        if model not in self.batchers:
            columns = model.checked_model.signature_dtypes
            settings = model.settings
            self.batchers[model] = Batcher(model, columns, settings.max_batch_size, settings.max_batch_time) if columns else None
        return self.batchers[model]

    async def _answer_v2(self, send, model, request_id: str | None, predictions: np.ndarray) -> None:
        request_id = request_id or str(uuid.uuid4())
        output = {
            "name": "output-1",
            "shape": [len(predictions), 1] if predictions.ndim == 1 else list(predictions.shape),
            "datatype": to_datatype(predictions.dtype).value,
            "parameters": {"content_type": "np"},
            "data": predictions.reshape(-1),
        }
        content = orjson.dumps(
            {
                "model_name": model.name,
                "model_version": model.registry_version,
                "id": request_id,
                "parameters": {"content_type": "np"},
                "outputs": [output],
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        events = self.cloudevents_headers(CloudEventsTypes.Response, model.settings, request_id)
        await _send(send, content, [*JSON, *((k.lower().encode(), v.encode()) for k, v in events.items())])


def _content_type(scope) -> bytes | None:
    for key, value in scope["headers"]:
        if key == b"content-type":
            return value.lower()
    return None


async def _read_body(receive) -> bytes:
    """The whole body (nginx caps its size)."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive):
    """A receive() that gives MLServer the body already read, then whatever comes next."""
    given = False

    async def replay():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send(send, content: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [*headers, (b"content-length", str(len(content)).encode())]}
    )
    await send({"type": "http.response.body", "body": content})
