"""Accounts besides the admin (`lab users`): each logs in, a removed one gets 401 at once,
passwords are shown once and stored only as hashes, and bad names change nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from mlflow_lab.testing.stacks import lab_cli

pytestmark = pytest.mark.stack
LOG_A_RUN = "import mlflow; mlflow.set_experiment('accounts')\nwith mlflow.start_run() as run: print('RUN', run.info.run_id)"


def users(lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return lab_cli(lab.cli_env, "users", *args, check=check)


def stored(lab) -> str:
    """The accounts file as nginx keeps it."""
    return (lab.require_internals().data_dir("nginx") / "users.htpasswd").read_text()


def status(lab, user: str, password: str) -> int:
    return requests.get(
        f"{lab.url}/api/2.0/mlflow/experiments/search?max_results=1", auth=(user, password), timeout=10
    ).status_code


def test_accounts_log_in_are_removed_at_once_and_keep_no_clear_password(lab):
    added = users(lab, "add", "alice", "bob.k", "--count", "2", "--prefix", "team")
    lines = added.stdout.splitlines()
    assert lines[0].split() == ["account", "password"]
    passwords = dict(line.split() for line in lines[1:])
    assert list(passwords) == ["alice", "bob.k", "team01", "team02"]
    assert all(len(p) >= 24 for p in passwords.values()) and len(set(passwords.values())) == 4
    try:
        for name, password in passwords.items():
            assert status(lab, name, password) == 200, name
            assert status(lab, name, password + "x") == 401, name
        assert status(lab, lab.user, lab.password) == 200, "the admin from .env stays"

        listed = users(lab, "list").stdout
        assert listed.split() == list(passwords)
        kept = stored(lab)
        assert not any(password in kept or password in listed for password in passwords.values())
        assert all(line.split(":", 1)[1].startswith("{SSHA}") for line in kept.splitlines())

        # MLflow 3.17's client reports the account it authenticates with as the run's user.
        env = {
            **os.environ,
            **lab.client_env(),
            "MLFLOW_TRACKING_USERNAME": "alice",
            "MLFLOW_TRACKING_PASSWORD": passwords["alice"],
        }
        logged = subprocess.run([sys.executable, "-c", LOG_A_RUN], env=env, capture_output=True, text=True, check=True)
        run = requests.get(
            f"{lab.url}/api/2.0/mlflow/runs/get",
            params={"run_id": next(line.split()[1] for line in logged.stdout.splitlines() if line.startswith("RUN "))},
            auth=(lab.user, lab.password),
            timeout=10,
        ).json()["run"]
        assert (run["info"]["user_id"], {t["key"]: t["value"] for t in run["data"]["tags"]}["mlflow.user"]) == ("alice", "alice")

        users(lab, "remove", "bob.k")
        assert status(lab, "bob.k", passwords["bob.k"]) == 401, "refused at once, no restart"
        assert status(lab, "alice", passwords["alice"]) == 200
    finally:
        users(lab, "remove", *[n for n in passwords if n != "bob.k"], check=False)
    assert users(lab, "list").stdout.split() == []


@pytest.mark.parametrize(
    "args, sentence",
    [
        (["add", "carol", "carol"], "error: 'carol' is named twice; nothing was changed."),
        (
            ["add", "dave", "Bad Name"],
            "error: 'Bad Name' is not a valid account name: a lowercase letter, then up to 31 of a-z 0-9 . _ -;"
            " nothing was changed.",
        ),
        (
            ["remove", "nobody-here"],
            "error: there is no account 'nobody-here' (the admin from .env cannot be removed); nothing was changed.",
        ),
    ],
)
def test_bad_names_are_one_sentence_and_change_nothing(lab, args, sentence):
    users(lab, "add", "erin")
    try:
        before = stored(lab)
        result = users(lab, *args, check=False)
        assert (result.returncode, result.stdout, result.stderr.strip()) == (1, "", sentence)
        assert stored(lab) == before
        again = users(lab, "add", "erin", check=False)
        assert again.stderr.strip() == "error: account 'erin' already exists; nothing was changed."
        admin = users(lab, "add", lab.user, check=False)
        assert admin.stderr.strip() == f"error: '{lab.user}' is the admin account from .env; nothing was changed."
        assert stored(lab) == before
    finally:
        users(lab, "remove", "erin")
