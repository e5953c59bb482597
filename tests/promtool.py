"""promtool, Prometheus's checker of configurations and alert rules, for tests/static/test_alert_rules.py.

Debian ships promtool only inside its `prometheus` package, whose installation also starts and
enables a Prometheus server on port 9090. The tests need the one binary, so
`python -m tests.promtool` takes it out of that package (apt-get download, dpkg-deb: no root
needed, nothing started; tests/debian_package.py) into the Python environment's bin directory, beside the other
checkers the static tests run (hadolint, check-jsonschema); .ci/run does so before the tests.
A promtool already on the PATH (from a Prometheus release or another package) is used instead.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from mlflow_lab.errors import LabError
from tests import debian_package

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
    deb = debian_package.take(PACKAGE, "usr/bin/promtool", INSTALLED)
    print(f"promtool: taken out of {deb} into {INSTALLED}")
    return str(INSTALLED)


if __name__ == "__main__":
    try:
        install()
    except LabError as exc:
        raise SystemExit(f"error: {exc}") from None
