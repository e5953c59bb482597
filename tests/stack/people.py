"""Accounts for the stack tests, made the way an admin makes them (`lab users add`), and a
client for each, reaching the lab through nginx as that person."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass

import requests

from mlflow_lab.testing.stacks import lab_cli
from mlflow_lab.trainers import SERVED

# A model a member owns, which the test labs' model API serves beside the admin's
# (MODEL_API_MODELS in TEST_OVERRIDES): a member's whole workflow ends with predictions.
MEMBER_MODEL = "member-stock"
TEST_OVERRIDES = {"MODEL_API_MODELS": " ".join((*SERVED, MEMBER_MODEL))}


def cli(lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`lab ARGS` against this lab (LAB_TEST_URL: the one this environment's .env describes)."""
    return lab_cli(lab.cli_env or os.environ, *args, check=check)


def users(lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return cli(lab, "users", *args, check=check)


def add(lab, *names: str, role: str = "member") -> dict[str, str]:
    """name -> password, as `lab users add` prints them once."""
    lines = users(lab, "add", *names, "--role", role).stdout.splitlines()
    assert lines[0].split() == ["account", "password"]
    return dict(line.split() for line in lines[1:])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclass
class Person:
    """One account, as its owner uses the lab: REST through nginx, or MLflow's client."""

    lab: object
    name: str
    password: str

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.lab.url + path, auth=(self.name, self.password), timeout=30, **kwargs)

    def api(self, method: str, endpoint: str, body: dict | None = None, **kwargs) -> requests.Response:
        """MLflow's REST API: GET takes `body` as query parameters, the rest as JSON."""
        path = f"/api/2.0/mlflow/{endpoint}"
        if method == "GET":
            return self.call(method, path, params=body, **kwargs)
        return self.call(method, path, json=body, **kwargs)
