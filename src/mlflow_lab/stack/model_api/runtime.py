"""The lab's MLflow runtime for MLServer: mlserver_mlflow.MLflowRuntime, made safe to expose.

What it adds to the stock runtime (measured on MLServer 1.7.1 / mlserver-mlflow 1.7.1):
- every refused request is a 400 with a one-line JSON error: the stock runtime answers
  malformed JSON on /invocations and schema errors on V2 infer with a 500 and a Python
  traceback, and its schema errors echo the caller's data;
- extra columns and empty batches are refused (pyfunc silently drops extra columns);
- V2 tensors are fitted to a tensor signature where nothing can be lost (`fit_tensors`): a
  1-D tensor is one row of a (-1, n) input, and a narrower type is widened (FP32 to
  float64, as the KServe tutorial's request sends for a model trained on a float64 array);
  a wrong length or a narrowing/lossy cast is still refused;
- `/models/<name>/invocations` per model: the stock `/invocations` route is global, so
  with two models only one of them could be reached; the route answers with the version
  that finished loading last, so a promotion never sends it to one still loading;
- the model is loaded off the event loop: with inference in the server process
  (MODEL_API_WORKERS=0) the old version keeps answering while the new one loads;
- the registry version in every answer (V2 `model_version`, `X-Model-Version` header,
  metadata `versions`), and a warm-up prediction before the model reports ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

import numpy as np
import pandas as pd
from fastapi import Depends, Header, Response
from mlserver.codecs.numpy import to_datatype, to_dtype
from mlserver.errors import InferenceError
from mlserver.handlers.custom import CustomHandler, register_custom_handler
from mlserver.types import InferenceRequest, InferenceResponse, RequestInput
from mlserver_mlflow import MLflowRuntime

from mlflow_lab.adapters import mlserver_internals
from mlflow_lab.scoring import conforming
from mlflow_lab.scoring.errors import short_reason

VERSION_KEY = "registry_version"
# Per process (the server's, or each worker's): the ready instance of each model name. MLServer
# re-imports this module whenever it reads a model-settings.json; the map outlives that.
serving: dict[str, LabMLflowRuntime] = mlserver_internals.kept_across_reloads(globals(), "serving", {})


class _CheckedModel:
    """A pyfunc model that also refuses empty batches and columns its signature lacks."""

    def __init__(self, model):
        self._pyfunc = model
        self.metadata = model.metadata
        schema = model.metadata.get_input_schema()
        self._columns = set(schema.input_names()) if schema is not None and schema.has_input_names() else None
        self.signature_dtypes = conforming.signature_dtypes(model)
        self.predict_conforming = conforming.conforming_predictor(model)

    def predict(self, data, params=None):
        if hasattr(data, "__len__") and len(data) == 0:
            raise InferenceError("the request holds no rows")
        if self._columns is not None and isinstance(data, pd.DataFrame):
            extra = [str(name) for name in data.columns if name not in self._columns]
            if extra:
                takes = ", ".join(sorted(self._columns))
                raise InferenceError(f"unexpected column(s) {', '.join(extra)}; the model takes {takes}")
        return self._pyfunc.predict(data, params=params)


def _widens(actual: np.dtype, expected: np.dtype) -> bool:
    """A cast that loses nothing: within a kind to a larger type, or an integer into a strictly
    larger float (int32 -> float64, not int64 -> float64, as MLflow's own schema rules have it)."""
    if not np.can_cast(actual, expected, casting="safe"):
        return False
    return actual.kind == expected.kind or actual.itemsize < expected.itemsize


def _fit_tensor(tensor: RequestInput, spec) -> RequestInput:
    shape, expected = list(tensor.shape), np.dtype(spec.type)
    wanted = list(spec.shape or ())
    if len(wanted) == len(shape) + 1 and wanted[0] == -1 and all(w in (-1, s) for w, s in zip(wanted[1:], shape, strict=True)):
        shape = [1, *shape]  # one row
    datatype = tensor.datatype
    if tensor.datatype != "BYTES" and _widens(to_dtype(tensor), expected):
        datatype = to_datatype(expected).value  # decoded straight from the request's numbers, no float32 round trip
    return tensor.model_copy(update={"shape": shape, "datatype": datatype})


def fit_tensors(payload: InferenceRequest, schema) -> InferenceRequest:
    """The request fitted to a tensor signature (see the module's docstring); other requests unchanged."""
    if schema is None or not schema.is_tensor_spec():
        return payload
    specs = {spec.name: spec for spec in schema.inputs}
    if len(specs) == 1 and len(payload.inputs) == 1:  # one unnamed or differently named tensor
        [spec] = specs.values()
        return payload.model_copy(update={"inputs": [_fit_tensor(payload.inputs[0], spec)]})
    inputs = [_fit_tensor(tensor, specs[tensor.name]) if tensor.name in specs else tensor for tensor in payload.inputs]
    return payload.model_copy(update={"inputs": inputs})


class LabMLflowRuntime(MLflowRuntime):
    checked_model: _CheckedModel  # what MLflowRuntime predicts with, once loaded

    def __init__(self, settings):
        super().__init__(settings)

        # A fresh function per instance: MLServer tells routes apart by endpoint identity,
        # which lets the old and the new version's routes coexist during a swap. MLServer
        # moves the route to the new instance before loading it, hence the `serving` lookup.
        async def model_invocations(
            raw_body: str = Depends(mlserver_internals.raw_body), content_type: str = Header(default="")
        ) -> Response:
            return await serving.get(settings.name, self)._checked_invocations(raw_body, content_type)

        register_custom_handler(CustomHandler(rest_path=f"/models/{settings.name}/invocations"), model_invocations)
        self.model_invocations = model_invocations

    @property
    def registry_version(self) -> str:
        extra = (self.settings.parameters.extra or {}) if self.settings.parameters else {}
        return str(extra.get(VERSION_KEY, ""))

    async def invocations(self, raw_body: str, content_type: str) -> Response:
        """No longer a route of its own (see model_invocations)."""
        return await self._checked_invocations(raw_body, content_type)

    async def _checked_invocations(self, raw_body: str, content_type: str) -> Response:
        try:
            response = await MLflowRuntime.invocations(self, raw_body=raw_body, content_type=content_type)
        except Exception as exc:  # noqa: BLE001 - whatever the input did, the caller gets one line
            raise InferenceError(short_reason(exc)) from None
        response.headers["X-Model-Version"] = self.registry_version
        return response

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        try:
            payload = fit_tensors(payload, self.checked_model.metadata.get_input_schema())
            response = await super().predict(payload)
        except Exception as exc:  # noqa: BLE001
            raise InferenceError(short_reason(exc)) from None
        response.model_version = self.registry_version
        return response

    async def load(self) -> bool:
        await asyncio.to_thread(self._load_blocking)
        serving[self.name] = self
        # The loaded libraries leave hundreds of thousands of long-lived objects; a full garbage
        # collection walking them all stalled every request in flight (p99 ~110 ms at 64
        # connections, measured). Frozen objects are left out of collections.
        gc.freeze()
        return True

    async def unload(self) -> bool:
        if serving.get(self.name) is self:
            del serving[self.name]
        return True

    def _load_blocking(self) -> None:
        # MLflowRuntime.load is a coroutine that blocks for seconds (download, deserialise);
        # it gets an event loop of its own in this thread.
        asyncio.run(super().load())
        self.checked_model = _CheckedModel(mlserver_internals.loaded_pyfunc(self))
        mlserver_internals.predict_through(self, self.checked_model)
        self._warm_up()

    def _warm_up(self) -> None:
        """One prediction on a row of zeros, so the first real request does not pay for lazy setup."""
        schema = self.checked_model.metadata.get_input_schema()
        if schema is None or not schema.has_input_names():
            return
        row = pd.DataFrame({spec.name: pd.Series([0], dtype=spec.type.to_pandas()) for spec in schema.inputs})
        with contextlib.suppress(Exception):  # a model that rejects zeros is still servable
            self.checked_model.predict(row)
