"""init's way into MLflow's user store (mlflow.server.auth.sqlalchemy_store), the one module
that reaches it: the accounts the lab itself needs exist before the tracking server starts,
without a server to ask. tests/unit/test_accounts.py pins every call made here.
"""

from __future__ import annotations

from mlflow_lab.accounts import DEFAULT_WORKSPACE, ensure_roles
from mlflow_lab.settings import Settings


class StoreApi:
    """The calls mlflow_lab.accounts makes (AuthServiceClient's names), on the store itself."""

    def __init__(self, uri: str):
        from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

        self.store = SqlAlchemyStore()
        self.store.init_db(uri)  # creates or migrates the auth schema

    def list_roles(self, workspace: str) -> list:
        return self.store.list_roles([workspace])

    def create_role(self, workspace: str, name: str):
        return self.store.create_role(name=name, workspace=workspace)

    def add_role_permission(self, role_id: int, resource_type: str, resource_pattern: str, permission: str):
        return self.store.add_role_permission(role_id, resource_type, resource_pattern, permission)

    def ensure_user(self, name: str, password: str, is_admin: bool) -> str:
        """The account with this password and admin flag: 'created', 'updated' or 'current'."""
        if not self.store.has_user(name):
            self.store.create_user(name, password, is_admin=is_admin)
            return "created"
        user = self.store.get_user(name)
        if self.store.authenticate_user(name, password) and user.is_admin == is_admin:
            return "current"
        self.store.update_user(name, password=password, is_admin=is_admin)
        return "updated"

    def ensure_role(self, name: str, role_id: int) -> None:
        user = self.store.get_user(name)
        if all(role.id != role_id for role in self.store.list_user_roles(user.id)):
            self.store.assign_role_to_user(user.id, role_id)


def ensure_lab_accounts(settings: Settings) -> list[str]:
    """The admin (LAB_USER, password kept in step with .env), the lab's roles in the default
    workspace, and the model API's read-only account. Returns what changed, for the log."""
    api = StoreApi(settings.auth_store_uri())
    roles = ensure_roles(api, DEFAULT_WORKSPACE)
    done = []
    for name, password, is_admin in (
        (settings["LAB_USER"], settings["LAB_PASSWORD"], True),
        (settings["MODEL_API_USER"], settings["MODEL_API_PASSWORD"], False),
    ):
        if (state := api.ensure_user(name, password, is_admin)) != "current":
            done.append(f"{state} account {name}")
    api.ensure_role(settings["MODEL_API_USER"], roles["viewer"])
    return done
