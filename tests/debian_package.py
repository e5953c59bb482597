"""A program out of a Debian package without installing it: `apt-get download` and
`dpkg-deb -x` (no root needed, no service started, nothing left in the system). Used for
promtool (tests/promtool.py) and the monitoring stand-in images (tests/standins/build.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from mlflow_lab.errors import LabError


def take(package: str, member: str, into: Path) -> str:
    """Copy `member` (a path inside the package, e.g. usr/bin/promtool) of Debian's `package`
    to `into`; returns the .deb's file name (package, version)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise LabError(f"this system has no apt-get/dpkg-deb to take {member} out of Debian's {package} package.")
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run(["apt-get", "download", package], cwd=scratch, capture_output=True, text=True)
        if download.returncode != 0 and os.geteuid() == 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            download = subprocess.run(["apt-get", "download", package], cwd=scratch, capture_output=True, text=True)
        if download.returncode != 0:
            raise LabError(
                f"apt-get download {package} failed ({download.stderr.strip()}): run `apt-get update` as root, then try again."
            )
        (deb,) = Path(scratch).glob(f"{package}_*.deb")
        subprocess.run(["dpkg-deb", "-x", deb, Path(scratch) / "root"], check=True)
        shutil.copy2(Path(scratch) / "root" / member, into)
        return deb.name
