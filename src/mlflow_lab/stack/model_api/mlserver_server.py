"""MODEL_SERVER=mlserver: MLServer with the lab's runtime, made safe to expose, plus the
registry follower; MODEL_SERVER=lab (the default) is the same server behind the lab's fast path.

What it changes in MLServer 1.7.1 (each measured or seen failing here):
- errors: FastAPI's 422 echoes the request body, worker errors carry a class-name prefix and
  unknown paths or models answer `{"detail": "Not Found"}`; all become a one-line JSON
  `error`; debug is off (it answers with tracebacks);
- batching: MLServer applies adaptive batching on a model's first load only; here it also
  applies after a promotion, and requests that fill a batch on their own skip it, as do
  lone 1-D tensors (the batcher would merge several one-row tensors into one long row);
- metrics: without worker processes MLServer's /metrics leaves out its own registry;
- the event loop: uvloop and uvicorn's httptools parser, as `mlserver start` would have them.
"""

from __future__ import annotations

import asyncio

import prometheus_client
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from mlserver import MLServer
from mlserver import metrics as mlserver_metrics
from mlserver.batching import load_batching
from mlserver.errors import ModelNotFound
from mlserver.parallel.errors import WorkerError
from mlserver.rest.responses import Response
from mlserver.settings import Settings as ServerSettings
from mlserver.utils import install_uvloop_event_loop
from starlette.exceptions import HTTPException

from mlflow_lab.adapters import mlserver_internals
from mlflow_lab.stack.model_api import http_errors
from mlflow_lab.stack.model_api.config import ApiConfig
from mlflow_lab.stack.model_api.fast_path import FastPath
from mlflow_lab.stack.model_api.follower import Follower


async def _validation_error(request, exc: RequestValidationError) -> Response:
    """FastAPI's default 422 echoes the request body back; say what is wrong without it."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', '')}" for error in exc.errors()[:3]
    )
    return Response(status_code=422, content={"error": f"invalid request: {problems}"})


async def _model_not_found(request, exc: ModelNotFound) -> JSONResponse:
    return http_errors.error_response(request, 404, exc)


async def _worker_error(request, exc: WorkerError) -> Response:
    """Errors from the inference workers arrive as "<module.Class>: <message>"; keep the message.
    Refused input is already a one-line InferenceError (4xx); anything else is not the caller's fault."""
    if exc.status_code < 500:
        return Response(status_code=exc.status_code, content={"error": str(exc).split(": ", 1)[-1]})
    return Response(status_code=exc.status_code, content={"error": "the model failed on this request; see the model-api log"})


async def _batch_small_requests(model):
    """MLServer's adaptive batching, for requests with fewer rows than a batch holds. Larger
    ones go straight to the model: merging and splitting them costs more than batching saves
    (1,000-row requests were ~1/3 slower through the batcher)."""
    direct = model.predict
    model = await load_batching(model)
    batched, rows_per_batch = model.predict, model.settings.max_batch_size
    if batched is direct:  # batching is off
        return model

    async def predict(payload):
        first = payload.inputs[0] if payload.inputs else None
        rows = first.shape[0] if first is not None and first.shape else 0
        # A lone 1-D tensor may be one row of a (-1, n) tensor model (the runtime fits it);
        # the batcher would concatenate several of them into one long row, so it goes direct.
        one_row_tensor = len(payload.inputs) == 1 and len(first.shape) == 1
        return await (direct if rows >= rows_per_batch or one_row_tensor else batched)(payload)

    model.predict = predict
    return model


class LabMLServer(MLServer):
    """MLServer with the lab's batching hook. It also applies when a new version replaces a model:
    MLServer 1.7.1 sets batching up on the first load only, so after the first promotion V2
    requests would no longer be batched. With `fast_path`, the lab's lean front (fast_path.py)
    takes the hot routes before MLServer's app sees them."""

    def __init__(self, settings: ServerSettings, fast_path: bool = False):
        super().__init__(settings)
        on_load, on_reload = mlserver_internals.model_hooks(self)
        on_load[:] = [_batch_small_requests if hook is load_batching else hook for hook in on_load]
        on_reload.append(lambda old_model, new_model: _batch_small_requests(new_model))
        if fast_path:
            data_plane = mlserver_internals.data_plane(self)
            mlserver_internals.wrap_rest_app(self, lambda app: FastPath(app, settings, data_plane))


def server_settings(config: ApiConfig) -> ServerSettings:
    return ServerSettings(
        debug=False,  # with debug on, unexpected errors answer with a Python traceback
        host=config.host,
        http_port=config.http_port,
        grpc_port=config.grpc_port,
        metrics_port=config.metrics_port,
        metrics_endpoint="/metrics",
        parallel_workers=config.workers,
        parallel_workers_timeout=30,
        model_repository_root=str(config.repository),
        load_models_at_startup=False,
    )


def install_error_handlers() -> None:
    """Read when MLServer builds its app; the most specific exception class wins."""
    mlserver_internals.install_exception_handlers(
        {
            RequestValidationError: _validation_error,
            WorkerError: _worker_error,
            ModelNotFound: _model_not_found,
            HTTPException: http_errors.http_exception,
        }
    )


async def serve(config: ApiConfig, fast_path: bool) -> None:
    install_error_handlers()
    if config.workers == 0:
        # Without workers MLServer's /metrics serves only prometheus_client's default registry,
        # leaving out its own per-model metrics (batch_request_queue and custom ones).
        prometheus_client.REGISTRY.register(mlserver_metrics.REGISTRY)
    config.repository.mkdir(parents=True, exist_ok=True)
    follower = asyncio.create_task(Follower(config).run())
    try:
        await LabMLServer(server_settings(config), fast_path).start()
    finally:
        follower.cancel()


def run(config: ApiConfig, fast_path: bool = False) -> None:
    install_uvloop_event_loop()  # as `mlserver start` does; the workers install it themselves
    asyncio.run(serve(config, fast_path))
