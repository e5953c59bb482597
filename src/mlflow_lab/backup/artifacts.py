"""The artifact objects, through the tracking server's artifact proxy behind nginx: the way
MLflow's clients reach them, with the lab's admin credentials. Neither runner publishes the
S3 server, and this needs no S3 credentials; keys are relative to the artifact destination
(`s3://<bucket>`), which is everything the tracking server stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings

API = "/api/2.0/mlflow-artifacts/artifacts"
CHUNK = 1 << 20


class ArtifactProxy:
    def __init__(self, settings: Settings):
        self.server = settings.tracking_uri()
        self.url = self.server + API
        self.http = requests.Session()
        self.http.auth = (settings["LAB_USER"], settings["LAB_PASSWORD"])
        # The same transient failures MLflow's own clients retry (a restarting server behind nginx).
        retry = Retry(total=5, backoff_factor=0.5, status_forcelist=(502, 503, 504), allowed_methods=None)
        self.http.mount("http://", HTTPAdapter(max_retries=retry))

    def _call(self, method: str, key: str = "", **kwargs) -> requests.Response:
        return self._request(method, f"{self.url}/{quote(key)}" if key else self.url, **kwargs)

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        try:
            response = self.http.request(method, url, timeout=300, **kwargs)
        except requests.RequestException as exc:
            raise LabError(f"the lab does not answer at {self.server}: {exc.__class__.__name__}; is it up (make up)?") from None
        if response.status_code == 401:
            raise LabError("nginx refused LAB_USER/LAB_PASSWORD from .env (401).")
        if not response.ok:
            raise LabError(f"the lab answered {response.status_code} to {method} {url}: {response.text[:200]}")
        return response

    def server_version(self) -> str:
        """The MLflow version of the tracking server behind the proxy (not necessarily this one's)."""
        return self._request("GET", f"{self.server}/version").text.strip()

    def keys(self) -> Iterator[tuple[str, int]]:
        """(key, size) of every object, depth first."""
        pending = [""]
        while pending:
            folder = pending.pop()
            listed = self._call("GET", params={"path": folder} if folder else {}).json().get("files", [])
            for item in listed:
                key = f"{folder}/{item['path']}" if folder else item["path"]
                if item.get("is_dir"):
                    pending.append(key)
                else:
                    yield key, int(item.get("file_size", 0))

    def download(self, key: str, into: Path) -> None:
        into.parent.mkdir(parents=True, exist_ok=True)
        with self._call("GET", key, stream=True) as response, into.open("wb") as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)

    def upload(self, key: str, path: Path) -> None:
        with path.open("rb") as body:
            self._call("PUT", key, data=body)

    def delete(self, key: str) -> None:
        self._call("DELETE", key)
