"""Debian's Chromium and its WebDriver, for the browser tests (tests/stack/test_ui.py).

`python -m tests.browser` installs them (as root, with apt-get; otherwise it prints the
command), as .ci/run does before the tests.
"""

from mlflow_lab.native.ospackages import ensure_installed

PACKAGES = {"chromium": "chromium", "chromedriver": "chromium-driver"}  # binary -> Debian package
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def ensure_browser() -> None:
    ensure_installed(PACKAGES, needed_by="the browser tests")


if __name__ == "__main__":
    ensure_browser()
