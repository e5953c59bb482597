"""The artifact server `mlflow gc` deletes through: the DELETE of MLflow's proxied-artifact API,
served on loopback by the collecting process itself and carried out on the bucket.

`mlflow gc` deletes what a run or a logged model stored through the artifact repository of its
URI. The lab's URIs are mlflow-artifacts:/<path>, which MLflow resolves only through an HTTP
tracking server (MLFLOW_TRACKING_URI). The lab's own tracking server would ask for the admin's
password, which nothing beside it holds. This endpoint needs none: it answers only that DELETE
(`/api/2.0/mlflow-artifacts/artifacts/<path>`), only on 127.0.0.1, only to the one-time
credentials it gives the `mlflow gc` it serves, and hands each path to a function of the
collection (which deletes the folder from the bucket, keeping what the registry still uses).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import unquote, urlsplit

API = "/api/2.0/mlflow-artifacts/artifacts/"
HOST = "127.0.0.1"
USER = "mlflow-lab-gc"


class DeleteHandler(BaseHTTPRequestHandler):
    server: ArtifactEndpoint

    def do_DELETE(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        if not hmac.compare_digest(self.headers.get("Authorization", ""), self.server.authorization):
            self.answer(401, {"error_code": "UNAUTHENTICATED", "message": "not the collection's own client"})
        elif not path.startswith(API):
            self.answer(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"only {API}<path> is served here"})
        else:
            try:
                self.server.delete(unquote(path[len(API) :]).strip("/"))
            except Exception as exc:
                # `mlflow gc` stops there; the collection reports this cause, not MLflow's traceback.
                # Not a 5xx, which MLflow's client would retry: the S3 client under it has retried already.
                self.server.failure = self.server.failure or exc
                self.answer(400, {"error_code": "INTERNAL_ERROR", "message": str(exc)})
            else:
                self.answer(200, {})

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        """Silent: the collection says what each deletion removed."""


class ArtifactEndpoint(HTTPServer):
    """One request at a time (`mlflow gc` deletes one folder after the other)."""

    def __init__(self, delete: Callable[[str], None]):
        super().__init__((HOST, 0), DeleteHandler)
        self.delete = delete
        self.failure: Exception | None = None  # the first deletion that failed
        self.password = secrets.token_urlsafe(24)
        self.authorization = "Basic " + base64.b64encode(f"{USER}:{self.password}".encode()).decode()

    def client_env(self) -> dict[str, str]:
        """What `mlflow gc` needs to delete through this endpoint (its environment, never its command line)."""
        return {
            "MLFLOW_TRACKING_URI": f"http://{HOST}:{self.server_port}",
            "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }


@contextmanager
def serving(delete: Callable[[str], None]) -> Iterator[ArtifactEndpoint]:
    """An endpoint handing every folder `mlflow gc` deletes to `delete`, while the block runs."""
    endpoint = ArtifactEndpoint(delete)
    thread = threading.Thread(target=endpoint.serve_forever, name="gc-artifact-endpoint", daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.shutdown()
        endpoint.server_close()
        thread.join()
