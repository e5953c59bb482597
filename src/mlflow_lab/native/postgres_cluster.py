"""PostgreSQL's database cluster for the native runner, made once with Debian's initdb."""

from __future__ import annotations

import subprocess
from pathlib import Path

from mlflow_lab.errors import LabError
from mlflow_lab.native import ospackages
from mlflow_lab.native.privileges import hand_over
from mlflow_lab.settings import Settings


def ensure_cluster(data: Path, settings: Settings, user: str | None) -> None:
    """A cluster in `data` (an existing one is kept), owned by `user`, whose superuser is
    POSTGRES_USER with POSTGRES_PASSWORD (given in a file beside it: never on a command line)."""
    if (data / "PG_VERSION").exists():
        return
    data.chmod(0o700)
    pwfile = data.parent / "pgpass.tmp"
    pwfile.write_text(settings["POSTGRES_PASSWORD"] + "\n")
    hand_over(pwfile, user)
    try:
        subprocess.run(
            [
                ospackages.postgres_bin("initdb"),
                "-D",
                str(data),
                "-U",
                settings["POSTGRES_USER"],
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            text=True,
            user=user,
            cwd=data.parent,
        )
    except subprocess.CalledProcessError as exc:
        raise LabError(f"initdb failed: {exc.stderr.strip()}") from None
    finally:
        pwfile.unlink()
