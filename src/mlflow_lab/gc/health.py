"""How the scheduled collector's last collection went: a file per lab in the temporary folder,
read by compose.yaml's health check every few seconds, so this module imports nothing heavy
(neither the settings schema nor MLflow)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

# What names one lab's stores: two native labs on a machine share its temporary folder.
STORES = ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DB", "S3_ENDPOINT_URL", "S3_BUCKET")


def status_file(environ: Mapping[str, str]) -> Path:
    lab = hashlib.sha256("\n".join(environ.get(name, "") for name in STORES).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mlflow-lab-gc-{lab}.json"


def record(environ: Mapping[str, str], ok: bool, message: str) -> None:
    path = status_file(environ)
    scratch = path.with_suffix(f".{os.getpid()}")
    scratch.write_text(json.dumps({"ok": ok, "at": datetime.now(UTC).isoformat(), "message": message}))
    scratch.replace(path)  # whole, for a health check reading it meanwhile


def healthy(environ: Mapping[str, str]) -> bool:
    """Whether the last collection succeeded (False before the first one has finished)."""
    try:
        return bool(json.loads(status_file(environ).read_text())["ok"])
    except (OSError, ValueError, KeyError):
        return False
