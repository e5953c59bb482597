"""The tracking server's app (`mlflow server --app-name mlflow-lab`, an `mlflow.app` entry
point): MLflow's auth app, with the creator of every run and model version set to the
account that authenticated the request, and every refusal of OTLP trace ingestion
(`/v1/traces`) in MLflow's JSON error shape.

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


# OTLP trace ingestion answers its refusals in three shapes (MLflow 3.17.2): MLflow's JSON
# ({"error_code", "message"}: unknown experiment), FastAPI's ({"detail": ...}: bad body, bad
# content type; a missing x-mlflow-experiment-id header is a 422 validation list for admins)
# and plain text from the auth app's middleware (the same missing header for other accounts,
# "Permission denied"). A service's exporter logs the body it gets back: one JSON shape with one
# sentence, whoever sends. Success answers stream through untouched.
OTLP_PATH = "/v1/traces"
# What the auth app answers non-admins who leave the header out, said to admins too.
MISSING_EXPERIMENT = "Missing required header: X-Mlflow-Experiment-Id"
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    422: "INVALID_PARAMETER_VALUE",
    429: "REQUEST_LIMIT_EXCEEDED",
    501: "NOT_IMPLEMENTED",
    503: "TEMPORARILY_UNAVAILABLE",
}


def _validation_message(errors: list) -> tuple[int, str]:
    """FastAPI's 422 list as one sentence; the missing experiment header is the client's 400."""
    if any(
        isinstance(e, dict) and e.get("type") == "missing" and e.get("loc") == ["header", "x-mlflow-experiment-id"]
        for e in errors
    ):
        return 400, MISSING_EXPERIMENT
    return 422, "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in errors if isinstance(e, dict))


def otlp_error(
    status: int, content_type: str, body: bytes, user: str | None = None, experiment: str | None = None
) -> tuple[int, bytes]:
    """An OTLP refusal (status >= 400) as MLflow's JSON error: (status, body). The auth app's bare
    "Permission denied" names who was refused where."""
    text = body.decode("utf-8", "replace").strip()
    if status == 403 and text == "Permission denied" and user and experiment:
        text = f"Permission denied: {user} may not log traces to experiment {experiment}"
    if content_type.startswith("application/json"):
        try:
            message = json.loads(body)
        except ValueError:
            message = None
        if isinstance(message, dict) and "error_code" in message and "message" in message:
            return status, body  # MLflow's own
        detail = message.get("detail") if isinstance(message, dict) else None
        if isinstance(detail, list):
            status, text = _validation_message(detail)
        elif detail is not None:
            text = str(detail)
    code = ERROR_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return status, json.dumps({"error_code": code, "message": text or f"HTTP {status}"}).encode()


class OtlpErrorsAsJson:
    """ASGI middleware: answers of /v1/traces with a status >= 400 rewritten by otlp_error (their
    bodies are a sentence long: held whole); every other answer passes as it comes."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != OTLP_PATH:
            return await self.app(scope, receive, send)
        held = {"start": None, "body": b""}
        user = basic_auth_user(scope.get("headers", []))
        experiment = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"x-mlflow-experiment-id"), None
        )

        async def rewrite(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"] = message
                return
            start = held["start"]
            if start is None or message["type"] != "http.response.body":
                return await send(message)
            held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return
            headers = {k.lower(): v for k, v in start.get("headers", [])}
            content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
            status, body = otlp_error(start["status"], content_type, held["body"], user, experiment)
            kept = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-type", b"content-length")]
            await send(
                {
                    **start,
                    "status": status,
                    "headers": [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return await self.app(scope, receive, rewrite)


# Answers 204 to admins: a route of the lab's that no validator of MLflow's auth app claims,
# so its fail-closed rule (MLFLOW_BASIC_AUTH_FAIL_CLOSED, on by default) refuses everyone else
# with 403 and unknown credentials with 401. nginx asks it before the admin-only paths
# (/prometheus/, nginx/lab-auth.conf.template).
ADMIN_CHECK = "/lab/admin"


def create_app():
    from mlflow.server import app
    from mlflow.server.auth import create_app as mlflow_auth_app

    app.add_url_rule(ADMIN_CHECK, "lab_admin_check", lambda: ("", 204), methods=["GET"])
    return OtlpErrorsAsJson(CreatorIsCaller(mlflow_auth_app(app)))
