"""The native runner runs whatever compose.yaml declares: a throwaway service, added to a copy
of it, starts under supervisord with its derived command, environment and health check."""

from __future__ import annotations

import urllib.request

import pytest
import yaml

from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import Settings
from mlflow_lab.testing.ports import free_ports, fresh_settings
from mlflow_lab.testing.stacks import new_state_dir, remove_state

pytestmark = pytest.mark.stack

PROBE = "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ['ECHO_PORT'], timeout=2)"


def test_a_throwaway_service_in_a_compose_file_runs_natively_without_touching_the_runner(tmp_path):
    port = free_ports(1)[0]
    compose_file = tmp_path / "compose.yaml"
    compose_file.write_text(
        yaml.safe_dump(
            {
                "services": {
                    "echo": {
                        "command": ["python", "-m", "http.server", "${ECHO_PORT:?ECHO_PORT is not set}", "--bind", "127.0.0.1"],
                        "environment": {"ECHO_PORT": "${ECHO_PORT}", "ECHO_NOTE": "for ${LAB_USER}"},
                        "healthcheck": {"test": ["CMD", "python", "-c", PROBE]},
                        "restart": "unless-stopped",
                    }
                }
            }
        )
    )
    stack = NativeStack(Settings({**fresh_settings().as_env(), "ECHO_PORT": str(port)}), new_state_dir(), compose_file)
    try:
        stack.up()
        assert stack.status() == {"echo": "healthy"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert response.status == 200
        assert "export ECHO_NOTE='for admin'" in (stack.private / "env" / "echo.env").read_text()
    finally:
        stack.down()
        remove_state(stack)
