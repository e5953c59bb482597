"""The model API's HTTP errors as the lab's one-line JSON `{"error": ...}`, whichever server runs it.

FastAPI/Starlette answer an unknown path with `{"detail": "Not Found"}` and MLServer an
unknown V2 model with "Model <name> with version  not found"; both become one sentence that
names the model when the path names one.
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import JSONResponse

_MODEL_PATH = re.compile(r"^/(?:v2/)?models/([^/]+)")


def error_response(request: Request, status_code: int, detail: object) -> JSONResponse:
    path = request.url.path
    if status_code == 404:
        found = _MODEL_PATH.match(path)
        message = f"no model {found.group(1)!r} is served here" if found else f"no such path: {path}"
    elif status_code == 405:
        message = f"{request.method} is not allowed on {path}"
    else:
        message = str(detail)
    return JSONResponse({"error": message}, status_code=status_code)


async def http_exception(request: Request, exc) -> JSONResponse:
    """Handler for starlette's HTTPException (FastAPI's is a subclass)."""
    return error_response(request, exc.status_code, exc.detail)
