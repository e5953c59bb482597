"""The tracking server's app (`mlflow server --app-name mlflow-lab`, an `mlflow.app` entry
point): MLflow's auth app, with the creator of every run and model version set to the
account that authenticated the request.

MLflow takes a run's `user_id` and its `mlflow.user` tag from the client, so any account
could log runs as any other. Here both are replaced with the request's account (the auth app
has already refused a request whose credentials fail); a model version, which has no user
field MLflow fills in, gets the same `mlflow.user` tag.
"""

from __future__ import annotations

import base64
import binascii
import json

USER_TAG = "mlflow.user"
RUNS_CREATE = "/mlflow/runs/create"
MODEL_VERSIONS_CREATE = "/mlflow/model-versions/create"
CREATES = {f"/{prefix}/2.0{path}": path for prefix in ("api", "ajax-api") for path in (RUNS_CREATE, MODEL_VERSIONS_CREATE)}


def basic_auth_user(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == b"authorization" and value[:6].lower() == b"basic ":
            try:
                return base64.b64decode(value[6:].strip(), validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def stamp_creator(body: bytes, kind: str, user: str) -> bytes:
    """The create request's JSON with its creator set to `user`; anything else unchanged."""
    try:
        message = json.loads(body or b"{}")
    except ValueError:
        return body  # MLflow answers the malformed body itself
    if not isinstance(message, dict):
        return body
    tags = [t for t in message.get("tags") or [] if not (isinstance(t, dict) and t.get("key") == USER_TAG)]
    message["tags"] = [*tags, {"key": USER_TAG, "value": user}]
    if kind == RUNS_CREATE:
        message["user_id"] = user
    return json.dumps(message).encode()


class CreatorIsCaller:
    """ASGI middleware: rewrites the body of the two create calls, passes everything else."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        kind = CREATES.get(scope.get("path", "")) if scope["type"] == "http" and scope.get("method") == "POST" else None
        user = basic_auth_user(scope.get("headers", [])) if kind else None
        if user is None:
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = stamp_creator(b"".join(chunks), kind, user)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


# Answers 204 to admins: a route of the lab's that no validator of MLflow's auth app claims,
# so its fail-closed rule (MLFLOW_BASIC_AUTH_FAIL_CLOSED, on by default) refuses everyone else
# with 403 and unknown credentials with 401. nginx asks it before the admin-only paths
# (/prometheus/, nginx/lab-auth.conf.template).
ADMIN_CHECK = "/lab/admin"


def create_app():
    from mlflow.server import app
    from mlflow.server.auth import create_app as mlflow_auth_app

    app.add_url_rule(ADMIN_CHECK, "lab_admin_check", lambda: ("", 204), methods=["GET"])
    return CreatorIsCaller(mlflow_auth_app(app))
