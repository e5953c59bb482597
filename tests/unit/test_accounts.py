"""The lab's accounts without a server: roles as MLflow grants in MLflow's real user store (on
SQLite here), which pins every call mlflow_lab.stack.auth_store makes into it, and the
tracking server's app setting the creator of what is created."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from mlflow_lab.accounts import DEFAULT_WORKSPACE, ROLES, check_names, ensure_roles, role_of
from mlflow_lab.errors import LabError
from mlflow_lab.stack.auth_app import CreatorIsCaller, stamp_creator
from mlflow_lab.stack.auth_store import StoreApi


@pytest.fixture
def store(tmp_path):
    return StoreApi(f"sqlite:///{tmp_path / 'auth.db'}")


def test_roles_are_made_once_with_their_grants(store):
    first = ensure_roles(store, DEFAULT_WORKSPACE)
    assert ensure_roles(store, DEFAULT_WORKSPACE) == first, "running init again changes nothing"
    for name, role_id in first.items():
        granted = {(p.resource_type, p.resource_pattern, p.permission) for p in store.store.list_role_permissions(role_id)}
        assert granted == set(ROLES[name])
    assert ensure_roles(store, "team-a").keys() == first.keys() and ensure_roles(store, "team-a") != first


def test_lab_accounts_follow_env_passwords_and_admin_flag(store):
    assert store.ensure_user("admin", "first-password-123456", is_admin=True) == "created"
    assert store.ensure_user("admin", "first-password-123456", is_admin=True) == "current"
    assert store.ensure_user("admin", "second-password-123456", is_admin=True) == "updated"
    assert store.store.authenticate_user("admin", "second-password-123456")
    assert not store.store.authenticate_user("admin", "first-password-123456")
    assert store.ensure_user("admin", "second-password-123456", is_admin=False) == "updated"
    assert not store.store.get_user("admin").is_admin
    viewer = ensure_roles(store, DEFAULT_WORKSPACE)["viewer"]
    store.ensure_user("model-api", "model-api-password-1234", is_admin=False)
    store.ensure_role("model-api", viewer)
    store.ensure_role("model-api", viewer)
    assert [r.name for r in store.store.list_user_roles(store.store.get_user("model-api").id)] == ["viewer"]


def test_role_of_reads_mlflows_user_list():
    assert role_of({"is_admin": True, "roles": []}) == "admin"
    assert role_of({"is_admin": False, "roles": [{"name": "viewer", "workspace": "default"}]}) == "viewer"
    assert role_of({"is_admin": False, "roles": [{"name": "member", "workspace": "team-a"}]}) == "none"


@pytest.mark.parametrize(
    "names, taken, message",
    [
        (["ok", "Bad"], set(), "'Bad' is not a valid account name"),
        (["admin"], set(), "'admin' is an account of the lab itself"),
        (["bob"], {"bob"}, "account 'bob' already exists"),
        (["eve", "eve"], set(), "'eve' is named twice"),
    ],
)
def test_bad_names_are_refused_before_anything_changes(names, taken, message):
    with pytest.raises(LabError, match=message):
        check_names(names, taken, reserved={"admin"})


def test_a_run_and_a_version_are_stamped_with_the_caller():
    claimed = json.dumps(
        {"experiment_id": "1", "user_id": "admin", "tags": [{"key": "mlflow.user", "value": "admin"}, {"key": "k", "value": "v"}]}
    )
    run = json.loads(stamp_creator(claimed.encode(), "/mlflow/runs/create", "alice"))
    assert run["user_id"] == "alice" and run["tags"] == [{"key": "k", "value": "v"}, {"key": "mlflow.user", "value": "alice"}]
    version = json.loads(stamp_creator(b'{"name": "m", "source": "s"}', "/mlflow/model-versions/create", "alice"))
    assert "user_id" not in version and version["tags"] == [{"key": "mlflow.user", "value": "alice"}]
    assert stamp_creator(b"{not json", "/mlflow/runs/create", "alice") == b"{not json", "MLflow answers a malformed body"


def test_the_app_rewrites_only_the_create_calls_and_replays_the_body():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["path"], dict(scope["headers"]), (await receive())["body"]))

    def call(path: str, body: bytes) -> None:
        token = base64.b64encode(b"alice:secret")
        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [(b"authorization", b"Basic " + token), (b"content-length", b"2")],
        }
        messages = iter(
            [{"type": "http.request", "body": body[:1], "more_body": True}, {"type": "http.request", "body": body[1:]}]
        )

        async def receive():
            return next(messages)

        asyncio.run(CreatorIsCaller(app)(scope, receive, None))

    call("/api/2.0/mlflow/runs/create", b'{"experiment_id": "1"}')
    call("/api/2.0/mlflow/experiments/create", b'{"name": "e"}')
    (path, headers, body), (_, _, untouched) = seen
    assert json.loads(body)["user_id"] == "alice" and headers[b"content-length"] == str(len(body)).encode()
    assert untouched == b"{", "other calls stream through as they came"
