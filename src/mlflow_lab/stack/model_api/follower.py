"""Follow the registry: serve what `models:/<name>/<stage or @alias>` points at, swapping without downtime.

Each model is one *unversioned* MLServer model whose settings name the registry version.
A reload of an unversioned model is MLServer's rolling swap: the new version loads beside the
old one (in the server process or in each worker), requests move to it, then the old one is
unloaded. (A *versioned* reload would register the new version as the default before it is
ready, and requests in that window fail with "not ready".) If the new version fails to load,
the old one keeps serving, the failure is logged, and that version is not retried until the
registry points elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import requests
from mlflow import MlflowClient
from prometheus_client import Gauge

from mlflow_lab import registry
from mlflow_lab.errors import LabError
from mlflow_lab.stack.model_api.config import ApiConfig
from mlflow_lab.stack.model_api.runtime import VERSION_KEY

log = logging.getLogger("mlflow_lab.model_api")
RUNTIME = "mlflow_lab.stack.model_api.runtime.LabMLflowRuntime"


class ModelFiles:
    """The model-settings.json of each served model, in MLServer's repository folder."""

    def __init__(self, config: ApiConfig):
        self.config = config

    def path(self, name: str) -> Path:
        return self.config.repository / name / "model-settings.json"

    def read(self, name: str) -> str | None:
        return self.path(name).read_text() if self.path(name).exists() else None

    def write(self, name: str, version: str) -> None:
        settings = {
            "name": name,
            "implementation": RUNTIME,
            "platform": "mlflow",
            "versions": [version],
            "max_batch_size": self.config.max_batch_size,
            "max_batch_time": self.config.max_batch_time,
            "parameters": {"uri": f"models:/{name}/{version}", "extra": {VERSION_KEY: version}},
        }
        self.restore(name, json.dumps(settings, indent=2))

    def restore(self, name: str, text: str | None) -> None:
        path = self.path(name)
        if text is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(text)
        partial.replace(path)  # MLServer never reads a half-written file


class VersionGauges:
    """Per model, on the model API's /metrics: the version it serves and the one the registry
    names (0 for none), read by the alerts ModelApiServingNoModel and ModelApiServingStaleVersion
    (services/prometheus/alerts.yml). Made once MLServer has set up its metrics: with worker
    processes prometheus_client then keeps values in files, and the newest value is the one."""

    def __init__(self, models: tuple[str, ...] | list[str]):
        self.served = Gauge(
            "mlflow_lab_model_served_version",
            "Registry version the model API serves (0: none)",
            ["model"],
            multiprocess_mode="mostrecent",
        )
        self.registry = Gauge(
            "mlflow_lab_model_registry_version",
            "Version the registry names at the last poll (0: none)",
            ["model"],
            multiprocess_mode="mostrecent",
        )
        for name in models:
            self.served.labels(name).set(0)
            self.registry.labels(name).set(0)


class Follower:
    def __init__(self, config: ApiConfig, client: MlflowClient | None = None):
        self.config, self.files = config, ModelFiles(config)
        self.client = client or MlflowClient(config.tracking_uri)
        self.serving: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self._last_problem: dict[str, str] = {}
        self.base = f"http://127.0.0.1:{config.http_port}"
        self.gauges: VersionGauges | None = None

    async def run(self) -> None:
        await self._wait_until_live()
        self.gauges = VersionGauges(self.config.models)
        while True:
            for name in self.config.models:
                await self.sync(name)
            await asyncio.sleep(self.config.poll_seconds)

    async def sync(self, name: str) -> None:
        uri = self.config.model_uri(name)
        try:
            ref = await asyncio.to_thread(registry.resolve_registered, uri, self.client)
        except registry.RegistryUnavailable as exc:  # the registry's answer is unknown: gauges stay
            self._report(name, f"cannot reach the registry for {uri}: {exc}")
            return
        except LabError as exc:
            self._gauge("registry", name, 0)  # the registry names no version
            self._report(name, f"not serving a new version of {name}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - the tracking server may be restarting; try again later
            self._report(name, f"cannot reach the registry for {uri}: {exc}")
            return
        self._last_problem.pop(name, None)
        self._gauge("registry", name, ref.version)
        if ref.version in (self.serving.get(name), self.failed.get(name)):
            return
        previous = self.files.read(name)
        self.files.write(name, ref.version)
        error = await asyncio.to_thread(self._load, name)
        if error is None:
            log.info("%s: now serving version %s (%s; was %s)", name, ref.version, uri, self.serving.get(name, "none"))
            self.serving[name] = ref.version
            self.failed.pop(name, None)
            self._gauge("served", name, ref.version)
        else:
            self.files.restore(name, previous)
            self.failed[name] = ref.version
            log.error(
                "%s: version %s failed to load, still serving %s: %s", name, ref.version, self.serving.get(name, "nothing"), error
            )

    def _gauge(self, which: str, name: str, version: str | int) -> None:
        if self.gauges is not None:  # made in run(); a bare sync() (tests) has none
            getattr(self.gauges, which).labels(name).set(int(version))

    def _load(self, name: str) -> str | None:
        try:
            response = requests.post(f"{self.base}/v2/repository/models/{name}/load", timeout=600)
        except requests.RequestException as exc:
            return str(exc)
        return None if response.ok else response.text[:500]

    def _report(self, name: str, problem: str) -> None:
        if self._last_problem.get(name) != problem:  # once per distinct problem, not every poll
            log.warning(problem)
            self._last_problem[name] = problem

    async def _wait_until_live(self) -> None:
        while True:
            try:
                if (await asyncio.to_thread(requests.get, f"{self.base}/v2/health/live", timeout=2)).ok:
                    return
            except requests.RequestException:
                pass
            await asyncio.sleep(0.5)
