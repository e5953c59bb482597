"""One garbage collection: MLflow's `mlflow gc` on what was deleted more than a duration ago,
in every workspace, with the artifacts of what it removes deleted from the bucket.

`mlflow gc` removes the rows of deleted runs, logged models and experiments, and deletes the
artifacts of each run and logged model it removes through `artifact_endpoint`. What it leaves
is done here (MLflow 3.17.2):
- an experiment's own folder: removing an experiment's row removes its logged models' rows too
  (a cascade), never their artifacts, so the folder of every experiment it removed is deleted after it;
- the registry: `mlflow gc` does not look at it, and a model version may download from a deleted
  run's folder (MLflow 2 logged models there), so every object a registered version downloads
  from is kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

from mlflow_lab.errors import LabError
from mlflow_lab.gc.artifact_endpoint import serving
from mlflow_lab.gc.bucket import Bucket, Tally
from mlflow_lab.gc.catalog import Catalog
from mlflow_lab.settings import Settings
from mlflow_lab.stack.tracking_server import artifacts_destination


@dataclass
class Report:
    older_than: str
    bucket: str
    before: Tally
    after: Tally
    runs: int = 0
    logged_models: int = 0
    experiments: int = 0
    deleted: Tally = field(default_factory=Tally)
    kept: Tally = field(default_factory=Tally)

    def __str__(self) -> str:
        lines = [
            f"gc: removed {self.runs} run(s), {self.logged_models} logged model(s) and {self.experiments} experiment(s) "
            f"deleted at least {self.older_than} ago; their artifacts: {self.deleted}",
            f"gc: bucket {self.bucket}: {self.before} before, {self.after} after",
        ]
        if self.kept.objects:
            lines.insert(1, f"gc: kept {self.kept} that registered model versions download from")
        return "\n".join(lines)


def say(message: str) -> None:
    print(message, flush=True)


def own_folder(key: str, experiment_id: str) -> bool:
    """Whether an experiment's artifact location is a folder of its own (MLflow's <root>/<id>), not
    a shared one an old experiment may have been given."""
    return key.rsplit("/", 1)[-1] == experiment_id


def mlflow_gc(settings: Settings, older_than: str, client_env: dict[str, str]) -> None:
    """`mlflow gc` in a process of its own: its lines on our output, its errors as a LabError."""
    argv = [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", settings.backend_store_uri()]
    argv += ["--older-than", older_than, "--all-workspaces"]
    env = {**os.environ, **settings.backend_store_env(), **artifacts_destination(settings)[1], **client_env}
    env.pop("MLFLOW_WORKSPACE", None)  # every workspace, not the one a shell may name
    env["PYTHONUNBUFFERED"] = "1"  # its lines in order with ours
    result = subprocess.run(argv, env=env, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise LabError(f"mlflow gc failed: {last}")


def collect(settings: Settings, older_than: str) -> Report:
    """Remove for good what was deleted at least `older_than` ago (a duration), with its artifacts."""
    bucket, catalog = Bucket(settings), Catalog(settings)
    report = Report(older_than, bucket.name, before=bucket.size(), after=Tally())
    doomed = catalog.deleted()
    keep = {key for uri in catalog.registry_sources() if (key := bucket.key_of(uri))}

    def delete(folder: str) -> None:
        deleted, kept = bucket.delete_folder(folder, keep)
        report.deleted.add(deleted)
        report.kept.add(kept)
        kept_note = f" (kept {kept}: a registered model version downloads from it)" if kept.objects else ""
        say(f"gc: deleted {folder}/: {deleted}{kept_note}")

    say(f"gc: mlflow gc --older-than {older_than}, every workspace")
    with serving(delete) as endpoint:
        try:
            mlflow_gc(settings, older_than, endpoint.client_env())
        except LabError:
            if endpoint.failure:  # the deletion `mlflow gc` stopped at, in the collection's words
                raise LabError(str(endpoint.failure).rstrip(".") + "; mlflow gc stopped there.") from None
            raise
    left, existing = catalog.deleted(), catalog.experiments()
    for experiment_id, location in doomed.experiments.items():
        if experiment_id in existing:  # not old enough, or restored meanwhile
            continue
        key = bucket.key_of(location)
        if key and own_folder(key, experiment_id):
            delete(key)
        else:
            say(f"gc: left {location} of experiment {experiment_id}: not a folder of its own")
    report.runs = len(doomed.runs - left.runs)
    report.logged_models = len(doomed.logged_models - left.logged_models)
    report.experiments = len(set(doomed.experiments) - existing)
    report.after = bucket.size()
    return report
