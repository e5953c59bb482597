"""MLServer's private names that the model API relies on, and the only module that uses them.

MLServer and mlserver-mlflow are released together from one repository, so they share this
module. Neither offers a public way to do what these functions do; each docstring says what
the lab needs and why. Callers bind what they need when the server is built, never per request
(the model API's fast path is measured in microseconds).
tests/unit/test_library_contracts.py checks every name against the installed versions, which
must be CHECKED_AGAINST's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mlserver.cloudevents import CloudEventsMiddleware
from mlserver.rest.errors import _EXCEPTION_HANDLERS
from mlserver_mlflow.runtime import _get_raw_body

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mlserver import MLServer
    from mlserver.handlers import DataPlane
    from mlserver.registry import MultiModelRegistry
    from mlserver.settings import Settings
    from mlserver_mlflow import MLflowRuntime

CHECKED_AGAINST = {"mlserver": "1.7.1", "mlserver-mlflow": "1.7.1"}
# What this module reaches into; tests/static/test_library_internals.py refuses these names
# everywhere else in src/.
PRIVATE_NAMES = frozenset(
    {
        "_EXCEPTION_HANDLERS",
        "_get_raw_body",
        "_rest_server",
        "_app",
        "_get_config",
        "_data_plane",
        "_model_registry",
        "_on_model_load",
        "_on_model_reload",
        "_ModelInferRequestSuccess",
        "_ModelInferRequestDuration",
        "_get_headers",
        "_model",
    }
)
Kept = TypeVar("Kept")

# A custom route's body as text: the FastAPI dependency MLflowRuntime.invocations declares, so
# the lab's /invocations routes read a body exactly as the stock one does before handing it on.
raw_body = _get_raw_body


def install_exception_handlers(handlers: dict[type[Exception], Callable[..., Any]]) -> None:
    """Add REST error handlers: MLServer builds its FastAPI app with the handlers in this
    module-level dict and has no setting for more. Call it before the server is built."""
    _EXCEPTION_HANDLERS.update(handlers)


def rest_app(server: MLServer) -> FastAPI:
    """The REST server's FastAPI app, for a route MLServer has no setting for (SageMaker's /ping)."""
    return server._rest_server._app


def wrap_rest_app(server: MLServer, wrap: Callable[[Any], Any]) -> None:
    """Have uvicorn serve `wrap(app)` instead of MLServer's REST app. The REST server builds its
    uvicorn config (app included) in `_get_config` when it starts; a Starlette middleware would
    run inside the app's own error handling, after the hot path should already have answered."""
    rest = server._rest_server
    build = rest._get_config

    def config():
        built = build()
        built.app = wrap(built.app)
        return built

    rest._get_config = config


def data_plane(server: MLServer) -> DataPlane:
    """What REST and gRPC both call: health, metadata, inference and their metrics."""
    return server._data_plane


def model_registry(server: MLServer) -> MultiModelRegistry:
    """The registry of loaded models, to load one without going through the repository API."""
    return server._model_registry


def model_hooks(server: MLServer) -> tuple[list, list]:
    """The coroutines the registry runs, in order, on a model's first load (model -> model:
    custom routes, load_batching) and when a new version replaces it ((old, new) -> new). These
    are the registry's own lists: change them in place, before any model is loaded."""
    registry = server._model_registry
    return registry._on_model_load, registry._on_model_reload


def infer_metrics(plane: DataPlane) -> tuple[Any, Any]:
    """The Prometheus counter and summary (labels model, version) that MLServer's own inference
    path updates per request, for answers given in front of it to count the same way."""
    return plane._ModelInferRequestSuccess, plane._ModelInferRequestDuration


def cloudevents_headers(settings: Settings) -> Callable[..., dict[str, str]]:
    """MLServer's CloudEvents headers for (event type, model settings, request id), without an
    InferenceResponse to put them on: the public response_middleware needs one, which costs the
    pydantic object the fast path exists to avoid."""
    return CloudEventsMiddleware(settings)._get_headers


def loaded_pyfunc(runtime: MLflowRuntime) -> Any:
    """The pyfunc model MLflowRuntime.load loaded."""
    return runtime._model


def predict_through(runtime: MLflowRuntime, model: Any) -> None:
    """Make MLflowRuntime's V2 predict and its /invocations call `model.predict` in place of the
    pyfunc model's: the lab's input checks between the stock runtime's decoding and the model."""
    runtime._model = model


def kept_across_reloads(namespace: dict[str, Any], name: str, initial: Kept) -> Kept:
    """A module global that survives MLServer re-executing its module: MLServer reloads the
    module of a model's `implementation` (importlib.reload) each time it reads that model's
    model-settings.json, which would otherwise replace the global with `initial` again.
    Use as `serving = kept_across_reloads(globals(), "serving", {})`."""
    return namespace.get(name, initial)
