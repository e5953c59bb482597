"""Entrypoint of the model-api service (Compose and native): MLServer plus the registry follower
(mlserver_server), behind the lab's fast path by default (MODEL_SERVER=lab, fast_path), or
MLflow's scoring server with MODEL_SERVER=mlflow (mlflow_server).

MLServer starts with no model; the follower loads each model once the registry has a
version for it, so `make up` works before anything is trained, and a promotion made later
is picked up within MODEL_API_POLL_SECONDS.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mlflow_lab.errors import run_cli
from mlflow_lab.settings import Settings
from mlflow_lab.stack.model_api import mlflow_server, mlserver_server
from mlflow_lab.stack.model_api.config import ApiConfig

# One per MODEL_SERVER value of the settings schema (tests/unit/test_settings.py checks both agree).
SERVERS = {
    "lab": lambda config: mlserver_server.run(config, fast_path=True),
    "mlserver": mlserver_server.run,
    "mlflow": mlflow_server.run,
}


def main() -> None:
    settings = Settings.load(env_file=None)
    settings.validate("model-api", passwords=False)
    repository = Path(settings.get("MODEL_API_REPOSITORY") or Path.home() / "model-repository")
    config = ApiConfig.from_settings(settings, repository)
    # MLflowRuntime loads models:/ URIs with the process-wide MLflow settings (workers inherit them).
    os.environ["MLFLOW_TRACKING_URI"] = config.tracking_uri
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = settings["MODEL_SERVER"]
    print(
        f"model-api ({server}): serving {', '.join(config.model_uri(m) for m in config.models)} "
        f"(registry {config.tracking_uri}, {config.workers} workers, batching {config.max_batch_size}"
        f"/{config.max_batch_time}s, polling every {config.poll_seconds}s)",
        flush=True,
    )
    SERVERS[server](config)


if __name__ == "__main__":
    run_cli(main)
