"""Serve one MLflow model directory, the way KServe and SageMaker start a model container.

- KServe (the lab's ClusterServingRuntime, deploy/k8s/kserve): the storage initializer has
  downloaded the model to /mnt/models (read-only); the container gets `--model_name`,
  `--model_dir`, `--http_port 8080` and `--grpc_port 8081`, as KServe's own Python runtimes do.
- SageMaker: `docker run IMAGE serve`; HTTP on 8080, `GET /ping`, `POST /invocations`.
- The lab's model image (`lab model-image`): the model baked in, started either way.

The runtime is the lab model API's (LabMLflowRuntime): V2 and MLflow's /invocations formats,
the same predictions and the same short JSON errors. The model loads once, at start, from the
directory alone: nothing is fetched from a tracking server. Until it has loaded, and for good
if it cannot load, /ping and /v2/health/ready answer 503 and the log says why: a half-loaded
model is never served.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer
from fastapi import Depends, Header, Response
from fastapi.responses import JSONResponse
from mlserver.errors import ModelNotFound
from mlserver.handlers.custom import CustomHandler, register_custom_handler
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.settings import Settings as ServerSettings
from mlserver.utils import install_uvloop_event_loop

from mlflow_lab.adapters import mlserver_internals
from mlflow_lab.stack.model_api import mlserver_server
from mlflow_lab.stack.model_api.runtime import VERSION_KEY, LabMLflowRuntime

log = logging.getLogger("mlflow_lab.one_model")


class OneModelRuntime(LabMLflowRuntime):
    """The lab's runtime, also answering MLflow's and SageMaker's root `/invocations`."""

    def __init__(self, settings):
        super().__init__(settings)

        async def root_invocations(
            raw_body: str = Depends(mlserver_internals.raw_body), content_type: str = Header(default="")
        ) -> Response:
            return await self._checked_invocations(raw_body, content_type)

        register_custom_handler(CustomHandler(rest_path="/invocations"), root_invocations)
        self.root_invocations = root_invocations


class OneModelServer(mlserver_server.LabMLServer):
    """Ready only once its one model is: MLServer alone calls a server with no model ready."""

    def __init__(self, settings: ServerSettings, model: ModelSettings):
        mlserver_server.install_error_handlers()  # before MLServer builds its app
        super().__init__(settings)
        self.model = model
        self.data_plane = mlserver_internals.data_plane(self)
        self.data_plane.ready = self.ready  # type: ignore[method-assign]
        mlserver_internals.rest_app(self).add_api_route("/ping", self.ping, methods=["GET"])

    async def ready(self) -> bool:
        try:
            return await self.data_plane.model_ready(self.model.name)
        except ModelNotFound:  # not loaded yet, or its load failed
            return False

    async def ping(self) -> JSONResponse:
        ready = await self.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def load(self) -> None:
        try:
            await mlserver_internals.model_registry(self).load(self.model)
        except Exception as exc:  # noqa: BLE001 - the container stays up, not ready, and says why
            log.error("cannot serve %s from %s: %s", self.model.name, self.model.parameters.uri, exc)

    async def serve(self) -> None:
        loading = asyncio.create_task(self.load())
        try:
            await self.start()
        finally:
            loading.cancel()


def model_settings(name: str, model_dir: Path, version: str) -> ModelSettings:
    return ModelSettings(
        name=name,
        implementation=OneModelRuntime,
        platform="mlflow",
        versions=[version] if version else [],
        parameters=ModelParameters(uri=str(model_dir), extra={VERSION_KEY: version}),
    )


def main(
    mode: Annotated[str, typer.Argument(help="`serve`, as SageMaker starts a container (the only mode).")] = "serve",
    model_name: Annotated[
        str, typer.Option("--model_name", envvar="MODEL_NAME", help="Name under /v2/models/ (KServe: the InferenceService).")
    ] = "model",
    model_dir: Annotated[
        Path, typer.Option("--model_dir", envvar="MODEL_DIR", help="The MLflow model directory (holds MLmodel).")
    ] = Path("/mnt/models"),
    model_version: Annotated[
        str, typer.Option("--model_version", envvar="MODEL_VERSION", help="Registry version, reported in every answer.")
    ] = "",
    http_port: Annotated[int, typer.Option("--http_port", envvar="HTTP_PORT", help="REST: V2, /invocations, /ping.")] = 8080,
    grpc_port: Annotated[int, typer.Option("--grpc_port", envvar="GRPC_PORT", help="V2 over gRPC.")] = 8081,
    metrics_port: Annotated[int, typer.Option("--metrics_port", envvar="METRICS_PORT", help="Prometheus /metrics.")] = 8082,
) -> None:
    """Serve the MLflow model in MODEL_DIR over V2 (REST and gRPC) and MLflow's /invocations."""
    if mode != "serve":
        raise typer.BadParameter(f"the only mode is `serve`, got {mode!r}", param_hint="MODE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ServerSettings(
        debug=False,
        host="0.0.0.0",
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        metrics_endpoint="/metrics",
        parallel_workers=0,  # one model, one process: KServe and SageMaker scale by replicas
        load_models_at_startup=False,
        model_repository_root=str(model_dir),
    )
    print(f"serving {model_dir} as {model_name!r} version {model_version or '(unknown)'} on :{http_port}", flush=True)
    install_uvloop_event_loop()
    asyncio.run(OneModelServer(settings, model_settings(model_name, model_dir, model_version)).serve())


def run() -> None:
    typer.run(main)


if __name__ == "__main__":
    run()
