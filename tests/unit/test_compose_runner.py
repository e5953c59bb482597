"""The Compose runner's checks that need no engine: which Compose it accepts, and what it says."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlflow_lab import compose
from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings


def fake_tools(folder: Path, plugin_version: str | None, standalone_version: str | None) -> None:
    """`docker` whose compose plugin is missing or at a version, and a standalone `docker-compose`."""
    scripts = {
        "docker": "#!/bin/sh\n"
        + (f'[ "$1" = compose ] && echo "{plugin_version}" && exit 0\n' if plugin_version else "")
        + 'echo "docker: unknown command: docker $1" >&2; exit 1\n',
        "docker-compose": f'#!/bin/sh\necho "{standalone_version}"\n' if standalone_version else None,
    }
    for name, body in scripts.items():
        if body:
            (folder / name).write_text(body)
            (folder / name).chmod(stat.S_IRWXU)


@pytest.fixture
def tools(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


def test_only_debian_compose_v1_is_refused_naming_both_versions(tools):
    fake_tools(tools, None, "1.29.2")
    with pytest.raises(LabError) as refused:
        compose.find_compose()
    assert str(refused.value).startswith("the lab needs Docker Compose v2.20 or newer, found docker-compose 1.29.2:")


def test_an_old_plugin_is_refused(tools):
    fake_tools(tools, "2.17.3", None)
    with pytest.raises(LabError, match=r"found docker compose 2\.17\.3"):
        compose.find_compose()


@pytest.mark.parametrize(
    "plugin, standalone, expected",
    [
        ("2.40.3", "1.29.2", ["docker", "compose"]),
        (None, "v2.24.0", ["docker-compose"]),
        ("2.17.0", "2.20.1", ["docker-compose"]),
    ],
)
def test_a_recent_compose_is_found(tools, plugin, standalone, expected):
    fake_tools(tools, plugin, standalone)
    assert compose.find_compose() == expected


def test_port_taken_names_the_setting(monkeypatch, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        settings = Settings({"LAB_BIND_ADDRESS": "127.0.0.1", "LAB_HTTP_PORT": str(taken), "LAB_GRPC_PORT": "1"})
        with pytest.raises(LabError, match=f"port {taken} on 127.0.0.1 is already taken: set LAB_HTTP_PORT"):
            compose.ComposeStack(settings, tmp_path / ".env")._check_ports(running_before=False)


def test_a_base_image_that_cannot_be_had_names_its_setting(tools):
    (tools / "docker").write_text('#!/bin/sh\n[ "$1" = pull ] && echo "Error response from daemon: no such host" >&2\nexit 1\n')
    (tools / "docker").chmod(stat.S_IRWXU)
    settings = Settings(
        {"PYTHON_IMAGE": "python:3.11.14-slim-bookworm", "POSTGRES_IMAGE": "p:1", "NGINX_IMAGE": "n:1", "COMPOSE_PROFILES": ""}
    )
    with pytest.raises(LabError) as refused:
        compose.ensure_base_images(settings)
    message = str(refused.value)
    assert "python:3.11.14-slim-bookworm is not in the Docker engine and cannot be pulled (Error response" in message
    assert "set PYTHON_IMAGE in .env" in message and os.linesep not in message
