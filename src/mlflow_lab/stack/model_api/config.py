"""Model API settings, read from the lab's .env names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings


@dataclass(frozen=True)
class ApiConfig:
    models: tuple[str, ...]
    reference: str  # "Production" (a stage) or "@champion" (an alias)
    tracking_uri: str
    http_port: int
    grpc_port: int
    metrics_port: int
    workers: int
    max_batch_size: int
    max_batch_time: float
    poll_seconds: float
    repository: Path  # where the model-settings.json files are written
    host: str = "0.0.0.0"

    @classmethod
    def from_settings(cls, settings: Settings, repository: Path) -> ApiConfig:
        models = tuple(settings.get("MODEL_API_MODELS").split())
        if not models:
            raise LabError("MODEL_API_MODELS is empty; name at least one registered model (e.g. wine-quality).")
        reference = settings["MODEL_API_MODEL_REF"]
        workers = settings.int("MODEL_API_WORKERS")
        if workers < 0:
            raise LabError(f"MODEL_API_WORKERS must be 0 (inference in the server process) or more; got {workers}.")
        return cls(
            models=models,
            reference=reference,
            tracking_uri=settings["MODEL_API_TRACKING_URI"],
            http_port=settings.int("MODEL_API_PORT"),
            grpc_port=settings.int("MODEL_API_GRPC_PORT"),
            metrics_port=settings.int("MODEL_API_METRICS_PORT"),
            workers=workers,
            max_batch_size=settings.int("MODEL_API_MAX_BATCH_SIZE"),
            max_batch_time=float(settings["MODEL_API_MAX_BATCH_TIME"]),
            poll_seconds=float(settings["MODEL_API_POLL_SECONDS"]),
            repository=repository,
            host=settings["MODEL_API_BIND_HOST"],
        )

    def model_uri(self, name: str) -> str:
        return f"models:/{name}{self.reference}" if self.reference.startswith("@") else f"models:/{name}/{self.reference}"
