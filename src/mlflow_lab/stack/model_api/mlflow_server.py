"""MODEL_SERVER=mlflow: the same service on MLflow's own scoring server, for comparison and as a fallback.

Each model is MLflow's scoring-server app (what `mlflow models serve` runs under uvicorn),
mounted at /models/<name>/ so the public URLs stay the same; uvicorn runs
MODEL_API_WORKERS processes (at least one). Versions are resolved once at start (restart the service to
pick up a promotion), there is no V2 protocol, and errors are answered MLflow's way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from mlflow import MlflowClient
from mlflow.pyfunc import scoring_server
from starlette.exceptions import HTTPException

from mlflow_lab import registry
from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings
from mlflow_lab.stack.model_api import http_errors
from mlflow_lab.stack.model_api.config import ApiConfig

log = logging.getLogger("mlflow_lab.model_api")


def _scoring_app(name: str, version: str) -> FastAPI:
    app = scoring_server.init(mlflow.pyfunc.load_model(f"models:/{name}/{version}"))

    @app.middleware("http")
    async def served_version(request: Request, call_next):
        response = await call_next(request)
        response.headers["X-Model-Version"] = version
        return response

    return app


def create_app() -> FastAPI:
    """App factory, called in every uvicorn worker."""
    config = ApiConfig.from_settings(Settings.load(env_file=None), Path("."))
    client = MlflowClient(config.tracking_uri)
    app, served = FastAPI(exception_handlers={HTTPException: http_errors.http_exception}), {}
    for name in config.models:
        try:
            ref = registry.resolve_registered(config.model_uri(name), client)
        except LabError as exc:
            log.warning("not serving %s: %s", name, exc)
            continue
        app.mount(f"/models/{name}", _scoring_app(name, ref.version))
        served[name] = ref.version

    @app.get("/v2/health/live")
    async def live():
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready():
        return JSONResponse({"ready": bool(served), "models": served}, status_code=200 if served else 503)

    @app.get("/v2/models/{name}/ready")
    async def model_ready(name: str):
        return JSONResponse({"ready": name in served}, status_code=200 if name in served else 404)

    return app


def run(config: ApiConfig) -> None:
    uvicorn.run(
        "mlflow_lab.stack.model_api.mlflow_server:create_app",
        factory=True,
        host=config.host,
        port=config.http_port,
        workers=max(1, config.workers),
        log_level="warning",
    )
