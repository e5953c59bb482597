"""The tracking server's app answers every refusal of OTLP trace ingestion (/v1/traces) in
MLflow's JSON error shape, whichever layer of MLflow 3.17.2 refused it; the bodies below are
the ones MLflow's app answered (recorded in-process on SQLite), and the stack test
(tests/stack/test_genai.py) checks the real thing through nginx."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from mlflow_lab.stack.auth_app import OtlpErrorsAsJson

MEMBER = base64.b64encode(b"bob:secret")


def answer(status: int, content_type: bytes, *chunks: bytes):
    """An inner app answering with `chunks` as the body."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})

    return app


def call(app, path: str = "/v1/traces", experiment: bytes | None = b"7") -> tuple[int, dict, list[bytes]]:
    headers = [(b"authorization", b"Basic " + MEMBER)]
    if experiment is not None:
        headers.append((b"x-mlflow-experiment-id", experiment))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    asyncio.run(OtlpErrorsAsJson(app)(scope, receive, send))
    start, *bodies = sent
    return start["status"], dict(start["headers"]), [b["body"] for b in bodies]


# (MLflow's status, content type, body) -> (the lab's status, error_code, message)
REFUSALS = {
    "missing header, admin (FastAPI's validation list)": (
        (
            422,
            b"application/json",
            b'{"detail":[{"type":"missing","loc":["header","x-mlflow-experiment-id"],"msg":"Field required","input":null}]}',
        ),
        (400, "BAD_REQUEST", "Missing required header: X-Mlflow-Experiment-Id"),
    ),
    "missing header, member (the auth app's text)": (
        (400, b"text/plain; charset=utf-8", b"Missing required header: X-Mlflow-Experiment-Id"),
        (400, "BAD_REQUEST", "Missing required header: X-Mlflow-Experiment-Id"),
    ),
    "malformed body (FastAPI's detail)": (
        (400, b"application/json", b'{"detail":"Invalid OpenTelemetry format"}'),
        (400, "BAD_REQUEST", "Invalid OpenTelemetry format"),
    ),
    "not allowed (the auth app's text)": (
        (403, b"text/plain; charset=utf-8", b"Permission denied"),
        (403, "PERMISSION_DENIED", "Permission denied: bob may not log traces to experiment 7"),
    ),
    "unknown credentials": (
        (401, b"text/plain; charset=utf-8", b"You are not authenticated."),
        (401, "UNAUTHENTICATED", "You are not authenticated."),
    ),
    "another validation error": (
        (422, b"application/json", b'{"detail":[{"type":"int_parsing","loc":["header","x"],"msg":"bad int"}]}'),
        (422, "INVALID_PARAMETER_VALUE", "header.x: bad int"),
    ),
    "a server error": (
        (500, b"text/plain", b"Internal Server Error"),
        (500, "INTERNAL_ERROR", "Internal Server Error"),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_become_mlflow_json(case):
    (status, content_type, body), expected = REFUSALS[case]
    got_status, headers, bodies = call(answer(status, content_type, body[:5], body[5:]))
    message = json.loads(b"".join(bodies))
    assert (got_status, message["error_code"], message["message"]) == expected
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(b"".join(bodies))).encode()


def test_mlflows_own_json_errors_pass_unchanged():
    body = b'{"error_code":"RESOURCE_DOES_NOT_EXIST","message":"No Experiment with id=9 exists"}'
    status, _, bodies = call(answer(404, b"application/json", body))
    assert (status, bodies) == (404, [body])


def test_success_and_other_paths_stream_through():
    accepted = call(answer(200, b"application/x-protobuf", b"", b""))
    assert accepted == (200, {b"content-type": b"application/x-protobuf"}, [b"", b""])
    elsewhere = call(answer(403, b"text/plain", b"Permission denied"), path="/api/2.0/mlflow/runs/create")
    assert elsewhere == (403, {b"content-type": b"text/plain"}, [b"Permission denied"])
