"""supervisord's configuration as the native runner writes it: each program's start command, run
here as supervisord would run it, without a supervisord."""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from mlflow_lab.native.program import Program
from mlflow_lab.native.supervisor import Supervisor


def start_command(supervisor: Supervisor, program: Program) -> list[str]:
    """The program's command line from supervisord.conf, unescaped as supervisord does."""
    conf = configparser.RawConfigParser()
    conf.read_string(supervisor.conf.read_text())
    return shlex.split(conf[f"program:{program.name}"]["command"].replace("%%", "%"))


def leftover_group() -> int:
    """A process group whose leader has exited and left a child behind (as after a SIGKILL)."""
    leader = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & echo $!"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    child = int(leader.stdout.readline())
    leader.wait()
    assert os.getpgid(child) == leader.pid
    return leader.pid


def gone(pid: int, timeout: float = 5) -> bool:
    """The process has exited (a zombie waiting for its reaper counts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_a_start_kills_the_previous_starts_leftovers_then_runs_the_program_with_its_variables(tmp_path):
    (tmp_path / "logs").mkdir()
    supervisor = Supervisor(tmp_path, tmp_path)
    program = Program("echo", ["/bin/sh", "-c", 'echo "$GREETING $0"', "100%"], {"GREETING": "it's $HOME"}, None, {}, False)
    assert supervisor.write_conf({"echo": program})
    assert not supervisor.write_conf({"echo": program}), "an unchanged configuration is not rewritten as a change"

    old = leftover_group()
    (tmp_path / "groups" / "echo").write_text(f"{old}\n")
    leftover = int(subprocess.run(["pgrep", "-g", str(old)], capture_output=True, text=True).stdout.split()[0])
    started = subprocess.run(start_command(supervisor, program), capture_output=True, text=True, start_new_session=True)
    try:
        assert started.stdout == "it's $HOME 100%\n", started.stderr
        assert gone(leftover), "the previous start's leftover survived"
        assert int((tmp_path / "groups" / "echo").read_text()) != old
        assert "it's" not in supervisor.conf.read_text(), "variables stay out of supervisord.conf"
        assert (tmp_path / "env" / "echo.env").stat().st_mode & 0o077 == 0
    finally:
        if not gone(leftover, 0):
            os.kill(leftover, signal.SIGKILL)
