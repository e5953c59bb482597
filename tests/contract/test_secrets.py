"""Secrets stay out of command lines: every user of the machine can read those (`ps`). The
host's /proc shows the native runner's processes and the containers' alike."""

from pathlib import Path

import pytest

from mlflow_lab.settings import PASSWORD_VARS

pytestmark = [pytest.mark.stack, pytest.mark.contract]


def command_lines() -> dict[int, str]:
    lines = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                lines[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:  # gone meanwhile
                continue
    return lines


def test_no_process_command_line_holds_a_secret(lab, mlflow_client):
    lab.require_internals()
    mlflow_client.search_experiments(max_results=1)  # the stack is up and serving
    secrets = {name: lab.settings[name] for name in PASSWORD_VARS}
    running = command_lines()
    assert any("mlflow" in line and " server" in line for line in running.values()), "no tracking server found"
    leaks = [(pid, name) for pid, line in running.items() for name, value in secrets.items() if value in line]
    assert leaks == []
