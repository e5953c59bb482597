"""promtool, Prometheus's checker of configurations and alert rules, for tests/static/test_alert_rules.py.

Debian ships promtool only inside its `prometheus` package, whose installation also starts and
enables a Prometheus server on port 9090. The tests need the one binary, so
`python -m tests.promtool` takes it out of that package (apt-get download, dpkg-deb: no root
needed, nothing started) into the Python environment's bin directory, beside the other
checkers the static tests run (hadolint, check-jsonschema); .ci/run does so before the tests.
A promtool already on the PATH (from a Prometheus release or another package) is used instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow_lab.errors import LabError

PACKAGE = "prometheus"  # Debian's; bookworm's is Prometheus 2.42
INSTALLED = Path(sys.executable).parent / "promtool"


def find() -> str | None:
    return shutil.which("promtool") or (str(INSTALLED) if INSTALLED.exists() else None)


def require() -> str:
    """promtool's path, or a LabError saying how to get it."""
    if found := find():
        return found
    raise LabError(
        f"promtool is not installed: run `.venv/bin/python -m tests.promtool` in the checkout "
        f"(it takes promtool out of Debian's {PACKAGE} package)."
    )


def install() -> str:
    if found := find():
        return found
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise LabError("promtool is not installed and this system has no apt-get: install Prometheus's promtool on the PATH.")
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run(["apt-get", "download", PACKAGE], cwd=scratch, capture_output=True, text=True)
        if download.returncode != 0 and os.geteuid() == 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            download = subprocess.run(["apt-get", "download", PACKAGE], cwd=scratch, capture_output=True, text=True)
        if download.returncode != 0:
            raise LabError(
                f"apt-get download {PACKAGE} failed ({download.stderr.strip()}): run `apt-get update` as root, then try again."
            )
        (deb,) = Path(scratch).glob(f"{PACKAGE}_*.deb")
        subprocess.run(["dpkg-deb", "-x", deb, Path(scratch) / "root"], check=True)
        shutil.copy2(Path(scratch) / "root/usr/bin/promtool", INSTALLED)
    print(f"promtool: taken out of {deb.name} into {INSTALLED}")
    return str(INSTALLED)


if __name__ == "__main__":
    try:
        install()
    except LabError as exc:
        raise SystemExit(f"error: {exc}") from None
