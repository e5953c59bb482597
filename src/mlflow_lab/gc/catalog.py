"""What garbage collection reads of MLflow's tracking database, before and after `mlflow gc`:
what is deleted (so what a collection may remove), and where the registry downloads model
versions from (so what it must keep). Read only, in MLflow's own tables, every workspace at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings

DELETED_RUNS = "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'deleted'"
DELETED_EXPERIMENTS = "SELECT experiment_id, artifact_location FROM experiments WHERE lifecycle_stage = 'deleted'"
# A deleted experiment's logged models go with it, whatever their own stage.
DOOMED_LOGGED_MODELS = (
    "SELECT model_id FROM logged_models WHERE lifecycle_stage = 'deleted' "
    "OR experiment_id IN (SELECT experiment_id FROM experiments WHERE lifecycle_stage = 'deleted')"
)
EXPERIMENTS = "SELECT experiment_id FROM experiments"
# What MLflow's registry downloads a version from (its get_model_version_download_uri).
REGISTRY_SOURCES = "SELECT COALESCE(NULLIF(storage_location, ''), source) FROM model_versions"


@dataclass(frozen=True)
class Deleted:
    """What is in MLflow's `deleted` lifecycle stage, so a collection's candidates."""

    runs: frozenset[str] = frozenset()
    logged_models: frozenset[str] = frozenset()
    experiments: dict[str, str] = field(default_factory=dict)  # id -> artifact location


class Catalog:
    def __init__(self, settings: Settings):
        # The password reaches libpq as PGPASSWORD (Settings.backend_store_env), never in the URI.
        self.engine = create_engine(settings.backend_store_uri(), poolclass=NullPool)
        self.where = ":".join(settings.postgres_address)

    def _rows(self, sql: str) -> list[tuple]:
        try:
            with self.engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql))]
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
            raise LabError(f"cannot read the tracking database at {self.where}: {reason}") from None

    def deleted(self) -> Deleted:
        return Deleted(
            runs=frozenset(row[0] for row in self._rows(DELETED_RUNS)),
            logged_models=frozenset(row[0] for row in self._rows(DOOMED_LOGGED_MODELS)),
            experiments={str(row[0]): row[1] for row in self._rows(DELETED_EXPERIMENTS)},
        )

    def experiments(self) -> set[str]:
        """The id of every experiment, in any stage."""
        return {str(row[0]) for row in self._rows(EXPERIMENTS)}

    def registry_sources(self) -> list[str]:
        return [row[0] for row in self._rows(REGISTRY_SOURCES) if row[0]]
