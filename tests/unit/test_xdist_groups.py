"""`make test` relies on pytest-xdist's `--dist loadgroup` to keep each runner's tests on one
worker (one stack each, in order). Pinned here: a session of two groups runs each group on a
single worker. (pytest 9.2 with xdist 3.8 spread them over both, silently.)"""

import subprocess
import sys
from collections import defaultdict

TESTS = """
import os, time
import pytest

@pytest.mark.xdist_group("one")
@pytest.mark.parametrize("n", range(4))
def test_one(n):
    time.sleep(0.2)
    with open("ran.txt", "a") as ran:
        print("one", os.environ["PYTEST_XDIST_WORKER"], file=ran)

@pytest.mark.xdist_group("two")
@pytest.mark.parametrize("n", range(4))
def test_two(n):
    time.sleep(0.2)
    with open("ran.txt", "a") as ran:
        print("two", os.environ["PYTEST_XDIST_WORKER"], file=ran)
"""


def test_loadgroup_keeps_each_group_on_one_worker(tmp_path):
    (tmp_path / "test_groups.py").write_text(TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider", "-p", "no:mlflow_lab"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    workers = defaultdict(set)
    for line in (tmp_path / "ran.txt").read_text().splitlines():
        group, worker = line.split()
        workers[group].add(worker)
    assert set(workers) == {"one", "two"} and all(len(w) == 1 for w in workers.values()), dict(workers)
