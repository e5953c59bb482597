"""MLflow's private names that the lab relies on, and the only module that uses them.

MLflow offers no public way to do what these functions do; each docstring says what the lab
needs and why. tests/unit/test_library_contracts.py checks every name against the installed
version, which must be CHECKED_AGAINST's.

MLflow's user store (mlflow.server.auth.sqlalchemy_store) is reached from
mlflow_lab.stack.auth_store instead: a public module path, but a server-side class with no
documented API, pinned call by call against the real store by tests/unit/test_accounts.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from mlflow.pyfunc import PyFuncModel

CHECKED_AGAINST = {"mlflow": "3.17.2"}
# What this module reaches into; tests/static/test_library_internals.py refuses these names
# everywhere else in src/.
PRIVATE_NAMES = frozenset({"_predict_fn", "_is_signature_from_type_hint", "_get_latest_schema_revision", "_get_alembic_config"})


def flavor_predict(model: PyFuncModel) -> Callable[..., Any]:
    """The flavor's predict that PyFuncModel.predict calls once it has enforced the input schema
    (~0.75 ms a call), for input that already conforms. PyFuncModel.predict always enforces;
    get_raw_model() is the bare estimator, not the flavor's predict."""
    return model._predict_fn


def signature_from_type_hints(model: PyFuncModel) -> bool:
    """Whether the signature was inferred from a PythonModel's type hints: then predict converts
    the input to those types, so its flavor predict cannot be called directly."""
    return model.metadata._is_signature_from_type_hint()


def latest_schema_revision() -> str:
    """The alembic revision this MLflow's tracking schema is at after `mlflow db upgrade`, for
    waiting until init has upgraded the database; MLflow exposes it only as this helper."""
    from mlflow.store.db.utils import _get_latest_schema_revision  # pulls in SQLAlchemy and alembic: only when asked

    return _get_latest_schema_revision()


def alembic_config(db_url: str) -> Config:
    """The alembic config of MLflow's own migration scripts (they live inside the package), to
    tell whether a schema revision is one this MLflow knows."""
    from mlflow.store.db.utils import _get_alembic_config

    return _get_alembic_config(db_url)
