"""What a benchmark run printed, kept in bench/results/<UTC date>-<short commit>.md, so that
every figure the docs quote can be traced to the run, the machine and the code it came from.
Runs of the same day and commit are appended to one file."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

BENCH = Path(__file__).parent
RESULTS = BENCH / "results"


class Tee(io.TextIOBase):
    """The terminal as before, and a copy of everything written to it."""

    def __init__(self, terminal: TextIO) -> None:
        self.terminal, self.copy = terminal, io.StringIO()

    def write(self, text: str) -> int:
        self.terminal.write(text)
        return self.copy.write(text)

    def flush(self) -> None:
        self.terminal.flush()


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=BENCH, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def results_file(started: datetime, commit: str) -> Path:
    return RESULTS / f"{started:%Y-%m-%d}-{commit}.md"


def write(path: Path, started: datetime, commit: str, command: str, code: str, outcome: str, printed: str) -> None:
    path.parent.mkdir(exist_ok=True)
    heading = "" if path.exists() else f"# Benchmark results, {started:%Y-%m-%d}, commit {commit}\n"
    with path.open("a") as out:
        out.write(f"{heading}\n## {started:%H:%M} UTC: `{command}`\n\n{code}. {outcome}.\n\n```text\n{printed.strip()}\n```\n")


@contextlib.contextmanager
def recorded(names: list[str]) -> Iterator[None]:
    """Print as usual; then append what was printed to the run's results file, also when the
    run stopped early (saying why), and name the file."""
    started = datetime.now(UTC)
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    subject = _git("log", "-1", "--format=%s")
    code = f"commit {commit}" + (f" ({subject[:100]})" if subject else "")
    if _git("status", "--porcelain", "--untracked-files=no"):
        code += " with uncommitted changes"
    runner = f"BENCH_RUNNER={os.environ['BENCH_RUNNER']} " if "BENCH_RUNNER" in os.environ else ""
    command = f"{runner}python -m bench {' '.join(names)}".strip()
    tee, outcome = Tee(sys.stdout), "Complete"
    try:
        with contextlib.redirect_stdout(tee):
            yield
    except BaseException as error:
        outcome = f"Stopped early ({type(error).__name__}: {error})"
        raise
    finally:
        path = results_file(started, commit)
        write(path, started, commit, command, code, outcome, tee.copy.getvalue())
        print(f"results: {path}")
