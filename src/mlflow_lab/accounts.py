"""The lab's accounts, roles and team workspaces, held by MLflow's auth app (`lab users`,
`lab workspaces`, and init for the accounts the lab itself needs).

Roles are stated here once, as MLflow permissions (docs/teams.md):
- admin: MLflow's is_admin flag; every right, accounts included.
- member: may create experiments, runs, registered models and prompts in its workspace
  (the workspace grant USE) and MLflow makes it MANAGE what it created; reads the rest.
- viewer: reads every experiment, model and prompt of its workspace; creates nothing
  (with workspaces on, creating needs the workspace grant, which a viewer lacks).

Everything goes through an `api` with the methods of MLflow's AuthServiceClient (the admin REST
API), or of mlflow_lab.stack.auth_store's adapter of MLflow's user store for init.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings, environ_set, new_secret

DEFAULT_WORKSPACE = "default"  # MLflow's: where clients that name no workspace work
READ_ALL = [("experiment", "*", "READ"), ("registered_model", "*", "READ"), ("prompt", "*", "READ")]
ROLES: dict[str, list[tuple[str, str, str]]] = {
    "member": [("workspace", "*", "USE"), *READ_ALL],
    "viewer": READ_ALL,
}
ROLE_NAMES = ("admin", *ROLES)
NAME = re.compile(r"[a-z][a-z0-9._-]{0,31}")


class AuthApi(Protocol):
    def list_roles(self, workspace: str) -> list: ...
    def create_role(self, workspace: str, name: str): ...
    def add_role_permission(self, role_id: int, resource_type: str, resource_pattern: str, permission: str): ...


def ensure_roles(api: AuthApi, workspace: str) -> dict[str, int]:
    """The lab's roles in `workspace` (created if missing): role name -> role id."""
    found = {role.name: role.id for role in api.list_roles(workspace) if role.name in ROLES}
    for name, grants in ROLES.items():
        if name not in found:
            role = api.create_role(workspace=workspace, name=name)
            for resource_type, pattern, permission in grants:
                api.add_role_permission(
                    role_id=role.id, resource_type=resource_type, resource_pattern=pattern, permission=permission
                )
            found[name] = role.id
    return found


def check_role(role: str) -> None:
    if role not in ROLE_NAMES:
        raise LabError(f"no role '{role}'; the roles are {', '.join(ROLE_NAMES)}.")


def check_names(names: list[str], taken: set[str], reserved: set[str]) -> None:
    """Every name valid, new and named once, or a LabError before anything changes."""
    for name in names:
        if not NAME.fullmatch(name):
            raise LabError(
                f"'{name}' is not a valid account name: a lowercase letter, then up to 31 of a-z 0-9 . _ -; nothing was changed."
            )
        if name in reserved:
            raise LabError(f"'{name}' is an account of the lab itself; nothing was changed.")
        if name in taken:
            raise LabError(f"account '{name}' already exists; nothing was changed.")
        if names.count(name) > 1:
            raise LabError(f"'{name}' is named twice; nothing was changed.")


class Directory:
    """The accounts of a running lab, administered through nginx as the admin from .env."""

    def __init__(self, settings: Settings, tracking_uri: str | None = None):
        self.settings = settings
        self.uri = tracking_uri or settings.tracking_uri()
        self.reserved = {settings["LAB_USER"], settings["MODEL_API_USER"]}

    @contextmanager
    def _as_admin(self) -> Iterator[None]:
        admin = {"MLFLOW_TRACKING_USERNAME": self.settings["LAB_USER"], "MLFLOW_TRACKING_PASSWORD": self.settings["LAB_PASSWORD"]}
        try:
            with environ_set(admin):
                yield
        except LabError:
            raise
        except Exception as exc:  # MlflowException, or the transport's when the lab is down
            raise LabError(f"MLflow at {self.uri} refused: {str(exc).strip().splitlines()[0]}") from None

    def _api(self):
        from mlflow.server.auth.client import AuthServiceClient

        return AuthServiceClient(self.uri)

    def _users(self) -> list[dict]:
        """MLflow's users/list (AuthServiceClient has no call for it): each with its roles."""
        import requests

        try:
            response = requests.get(
                f"{self.uri}/api/2.0/mlflow/users/list",
                auth=(self.settings["LAB_USER"], self.settings["LAB_PASSWORD"]),
                timeout=30,
            )
        except requests.RequestException:
            raise LabError(f"no lab answers at {self.uri}: is it up (`make up`)?") from None
        if response.status_code != 200:
            raise LabError(f"MLflow at {self.uri} refused the admin from .env ({response.status_code}).")
        return response.json()["users"]

    def accounts(self) -> list[tuple[str, str]]:
        """(name, role) of every account but the lab's own, in MLflow's order."""
        return [(user["username"], role_of(user)) for user in self._users() if user["username"] not in self.reserved]

    def add(self, names: list[str], role: str) -> list[tuple[str, str]]:
        """New accounts with generated passwords: (name, password), shown once by the caller."""
        check_role(role)
        check_names(names, {name for name, _ in self.accounts()}, self.reserved)
        added: list[tuple[str, str]] = []
        with self._as_admin():
            api = self._api()
            roles = ensure_roles(api, DEFAULT_WORKSPACE)
            try:
                for name in names:
                    password = new_secret()
                    api.create_user(name, password)
                    added.append((name, password))
                    self._give(api, name, role, roles)
            except Exception:
                for name, _ in added:  # nothing half-done: no account whose password nobody saw
                    api.delete_user(name)
                raise
        return added

    def _give(self, api, name: str, role: str, roles: dict[str, int]) -> None:
        api.update_user_admin(name, role == "admin")
        held = {r.id for r in api.list_user_roles(name)}
        for other, role_id in roles.items():
            if other != role and role_id in held:
                api.unassign_role(name, role_id)
        if role in roles:
            api.assign_role(name, roles[role])

    def set_role(self, name: str, role: str) -> None:
        check_role(role)
        self._existing([name])
        with self._as_admin():
            api = self._api()
            self._give(api, name, role, ensure_roles(api, DEFAULT_WORKSPACE))

    def reset_password(self, name: str) -> str:
        self._existing([name])
        password = new_secret()
        with self._as_admin():
            self._api().update_user_password(name, password)
        return password

    def remove(self, names: list[str]) -> None:
        self._existing(names)
        with self._as_admin():
            api = self._api()
            for name in names:
                api.delete_user(name)

    def _existing(self, names: list[str]) -> None:
        known = {name for name, _ in self.accounts()}
        for name in names:
            if name not in known:
                raise LabError(
                    f"there is no account '{name}' (the lab's own accounts cannot be changed here); nothing was changed."
                )

    # --- team workspaces ---------------------------------------------------------
    def add_workspace(self, workspace: str, members: list[str]) -> None:
        if not NAME.fullmatch(workspace):
            raise LabError(f"'{workspace}' is not a valid workspace name: a lowercase letter, then a-z 0-9 . _ -.")
        self._existing(members)
        with self._as_admin():
            from mlflow import MlflowClient

            client = MlflowClient(self.uri)
            if workspace not in {w.name for w in client.list_workspaces()}:
                client.create_workspace(workspace)
            api = self._api()
            roles = ensure_roles(api, workspace)
            for name in members:
                api.assign_role(name, roles["member"])

    def workspaces(self) -> dict[str, list[str]]:
        """Every workspace -> the accounts with a lab role in it."""
        names = {user["id"]: user["username"] for user in self._users()}
        found: dict[str, list[str]] = {}
        with self._as_admin():
            from mlflow import MlflowClient

            api = self._api()
            for workspace in MlflowClient(self.uri).list_workspaces():
                roles = [role for role in api.list_roles(workspace.name) if role.name in ROLES]
                ids = [a.user_id for role in roles for a in api.list_role_users(role.id)]
                found[workspace.name] = list(dict.fromkeys(names[i] for i in ids if i in names))
        return found


def role_of(user: dict) -> str:
    """The lab role of a user as MLflow's users/list answers it (admin flag, then role names)."""
    if user.get("is_admin"):
        return "admin"
    names = {role["name"] for role in user.get("roles", []) if role["workspace"] == DEFAULT_WORKSPACE}
    return next((name for name in ROLES if name in names), "none")
