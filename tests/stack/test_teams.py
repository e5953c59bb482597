"""Teams that cannot hurt each other: what a member, a viewer and the admin may do to what
others own, checked through nginx as each of them, and read back as the admin."""

from __future__ import annotations

import hashlib
import time

import pytest

from tests.stack.people import Person, add, cli, unique, users

pytestmark = pytest.mark.stack
ARTIFACT = b"the owner's bytes\n" * 64


def build(owner: Person) -> dict:
    """What `owner` makes: an experiment with a run (a metric, an artifact), and a registered
    model with two versions, version 1 in Production and @champion."""
    name = unique(f"{owner.name}-work")
    experiment_id = owner.api("POST", "experiments/create", {"name": name}).json()["experiment_id"]
    info = owner.api("POST", "runs/create", {"experiment_id": experiment_id}).json()["run"]["info"]
    owner.api("POST", "runs/log-metric", {"run_id": info["run_id"], "key": "m", "value": 1.0, "timestamp": 0}).raise_for_status()
    artifacts = info["artifact_uri"].removeprefix("mlflow-artifacts:/")
    artifact = f"/api/2.0/mlflow-artifacts/artifacts/{artifacts}/a.txt"
    owner.call("PUT", artifact, data=ARTIFACT).raise_for_status()
    owner.api("POST", "registered-models/create", {"name": name}).raise_for_status()
    for _ in range(2):
        owner.api(
            "POST", "model-versions/create", {"name": name, "source": info["artifact_uri"], "run_id": info["run_id"]}
        ).raise_for_status()
    owner.api(
        "POST",
        "model-versions/transition-stage",
        {"name": name, "version": "1", "stage": "Production", "archive_existing_versions": False},
    ).raise_for_status()
    owner.api("POST", "registered-models/alias", {"name": name, "alias": "champion", "version": "1"}).raise_for_status()
    return {
        "name": name,
        "experiment_id": experiment_id,
        "run_id": info["run_id"],
        "artifact": artifact,
        "source": info["artifact_uri"],
    }


def snapshot(admin: Person, work: dict) -> dict:
    """Everything the attempts could change, as the admin reads it."""
    experiment = admin.api("GET", "experiments/get", {"experiment_id": work["experiment_id"]}).json()["experiment"]
    run = admin.api("GET", "runs/get", {"run_id": work["run_id"]}).json()["run"]
    model = admin.api("GET", "registered-models/get", {"name": work["name"]}).json()["registered_model"]
    versions = admin.api("GET", "model-versions/search", {"filter": f"name='{work['name']}'"}).json()["model_versions"]
    return {
        "experiment": (experiment["name"], experiment["lifecycle_stage"]),
        "run": (run["info"]["lifecycle_stage"], run["data"].get("metrics")),
        "artifact": hashlib.sha256(admin.call("GET", work["artifact"]).content).hexdigest(),
        "aliases": model.get("aliases"),
        "versions": sorted((v["version"], v["current_stage"]) for v in versions),
    }


# Each thing a member must not do to another's work: (method, what) -> the request.
ATTEMPTS = {
    "delete the experiment": lambda p, w: p.api("POST", "experiments/delete", {"experiment_id": w["experiment_id"]}),
    "rename the experiment": lambda p, w: p.api(
        "POST", "experiments/update", {"experiment_id": w["experiment_id"], "new_name": w["name"] + "-taken"}
    ),
    "delete the run": lambda p, w: p.api("POST", "runs/delete", {"run_id": w["run_id"]}),
    "log to the run": lambda p, w: p.api(
        "POST", "runs/log-metric", {"run_id": w["run_id"], "key": "m", "value": 99.0, "timestamp": 1}
    ),
    "overwrite an artifact": lambda p, w: p.call("PUT", w["artifact"], data=b"not yours"),
    "delete an artifact": lambda p, w: p.call("DELETE", w["artifact"]),
    "start a multipart upload": lambda p, w: p.call(
        "POST", w["artifact"].replace("/artifacts/", "/mpu/create/", 1), json={"path": "a.txt", "num_parts": 1}
    ),
    "transition a version": lambda p, w: p.api(
        "POST",
        "model-versions/transition-stage",
        {"name": w["name"], "version": "1", "stage": "Archived", "archive_existing_versions": False},
    ),
    "move the alias": lambda p, w: p.api(
        "POST", "registered-models/alias", {"name": w["name"], "alias": "champion", "version": "2"}
    ),
    "delete the registered model": lambda p, w: p.api("DELETE", "registered-models/delete", {"name": w["name"]}),
    "create a version in it": lambda p, w: p.api(
        "POST", "model-versions/create", {"name": w["name"], "source": w["source"], "run_id": w["run_id"]}
    ),
}


@pytest.fixture(scope="module")
def team(lab):
    """The admin, two members and a viewer; the admin's work and a member's."""
    admin = Person(lab, lab.user, lab.password)
    alice, bob = unique("alice"), unique("bob")
    viewer = unique("vic")
    passwords = {**add(lab, alice, bob), **add(lab, viewer, role="viewer")}
    people = {name: Person(lab, name, password) for name, password in passwords.items()}
    crew = {"admin": admin, "alice": people[alice], "bob": people[bob], "viewer": people[viewer]}
    work = {"admin": build(admin), "alice": build(crew["alice"])}
    yield crew, work
    users(lab, "remove", alice, bob, viewer, check=False)


@pytest.mark.parametrize("attempt", list(ATTEMPTS))
@pytest.mark.parametrize("attacker, owner", [("alice", "admin"), ("bob", "alice")], ids=["member-vs-admin", "member-vs-member"])
def test_a_member_cannot_change_what_others_own(team, attempt, attacker, owner):
    crew, work = team
    before = snapshot(crew["admin"], work[owner])
    response = ATTEMPTS[attempt](crew[attacker], work[owner])
    assert response.status_code == 403, response.text[:200]
    assert snapshot(crew["admin"], work[owner]) == before


def test_a_member_changes_what_it_owns_and_reads_the_rest(team):
    crew, work = team
    alice, mine, theirs = crew["alice"], work["alice"], work["admin"]
    assert alice.api("GET", "runs/get", {"run_id": theirs["run_id"]}).status_code == 200
    assert alice.call("GET", theirs["artifact"]).content == ARTIFACT
    assert alice.api("GET", "registered-models/get", {"name": theirs["name"]}).status_code == 200
    assert ATTEMPTS["log to the run"](alice, mine).status_code == 200
    assert ATTEMPTS["move the alias"](alice, mine).status_code == 200
    assert ATTEMPTS["delete an artifact"](alice, mine).status_code == 200


def test_the_creator_is_the_account_not_what_the_client_says(team):
    crew, work = team
    alice, admin = crew["alice"], crew["admin"]
    claims = [{"key": "mlflow.user", "value": admin.name}]
    run = alice.api(
        "POST", "runs/create", {"experiment_id": work["alice"]["experiment_id"], "user_id": admin.name, "tags": claims}
    )
    info = admin.api("GET", "runs/get", {"run_id": run.json()["run"]["info"]["run_id"]}).json()["run"]
    assert info["info"]["user_id"] == alice.name
    assert {t["key"]: t["value"] for t in info["data"]["tags"]}["mlflow.user"] == alice.name
    mine = work["alice"]
    version = alice.api(
        "POST",
        "model-versions/create",
        {"name": mine["name"], "source": mine["source"], "run_id": mine["run_id"], "tags": claims},
    )
    tags = {t["key"]: t["value"] for t in version.json()["model_version"]["tags"]}
    assert tags["mlflow.user"] == alice.name


def test_a_viewer_reads_everything_and_writes_nothing(team):
    crew, work = team
    viewer, theirs = crew["viewer"], work["admin"]
    found = viewer.api("POST", "experiments/search", {"max_results": 1000}).json()["experiments"]
    assert {theirs["experiment_id"], work["alice"]["experiment_id"]} <= {e["experiment_id"] for e in found}
    assert viewer.api("GET", "runs/get", {"run_id": theirs["run_id"]}).json()["run"]["data"]["metrics"][0]["value"] == 1.0
    assert viewer.call("GET", theirs["artifact"]).content == ARTIFACT
    assert viewer.api("GET", "registered-models/get", {"name": theirs["name"]}).status_code == 200
    before = snapshot(crew["admin"], theirs)
    refused = {
        "create an experiment": viewer.api("POST", "experiments/create", {"name": unique("viewer-exp")}),
        "create a registered model": viewer.api("POST", "registered-models/create", {"name": unique("viewer-model")}),
        **{
            attempt: ATTEMPTS[attempt](viewer, theirs)
            for attempt in ("log to the run", "overwrite an artifact", "move the alias")
        },
    }
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 403)
    assert snapshot(crew["admin"], theirs) == before


def test_only_the_admin_manages_accounts(team, lab):
    crew, _ = team
    member, admin = crew["alice"], crew["admin"]
    newcomer = {"username": unique("newcomer"), "password": "a-long-enough-password-1234"}
    assert member.api("POST", "users/create", newcomer).status_code == 403
    assert member.api("PATCH", "users/update-admin", {"username": member.name, "is_admin": True}).status_code == 403
    assert member.call("POST", "/api/3.0/mlflow/roles/create", json={"workspace": "default", "name": "mine"}).status_code == 403
    assert member.call("GET", "/signup").status_code == 403
    assert admin.call("GET", "/signup").status_code == 200
    assert admin.api("POST", "users/create", newcomer).status_code == 200
    listed = users(lab, "list").stdout
    assert f"{newcomer['username']}  none" in listed and f"{member.name}  member" in listed
    users(lab, "remove", newcomer["username"])


def test_nobody_reaches_the_model_repository_api(team):
    crew, _ = team
    for person in (crew["admin"], crew["alice"]):
        assert person.call("POST", "/v2/repository/index", json={}).status_code == 403
        assert person.call("POST", "/v2/repository/models/wine-quality/unload").status_code == 403


def test_each_team_sees_only_its_own_workspace(team, lab):
    crew, _ = team
    teams = {unique("team-a"): crew["alice"], unique("team-b"): crew["bob"]}
    made = {}
    for workspace, member in teams.items():
        said = cli(lab, "workspaces", "add", workspace, "--members", member.name)
        assert f"MLFLOW_WORKSPACE={workspace}" in said.stdout
        header = {"X-MLFLOW-WORKSPACE": workspace}
        name = unique(f"{workspace}-exp")
        made[workspace] = member.api("POST", "experiments/create", {"name": name}, headers=header).json()["experiment_id"]
        assert member.api("POST", "registered-models/create", {"name": name}, headers=header).status_code == 200
    for workspace, member in teams.items():
        header = {"X-MLFLOW-WORKSPACE": workspace}
        seen = {
            e["experiment_id"]
            for e in member.api("POST", "experiments/search", {"max_results": 1000}, headers=header).json()["experiments"]
        }
        models = {
            m["name"] for m in member.api("GET", "registered-models/search", headers=header).json().get("registered_models", [])
        }
        assert made[workspace] in seen and not (set(made.values()) - {made[workspace]}) & seen
        assert all(name.startswith(workspace) for name in models)
        other = next(w for w in teams if w != workspace)
        peek = member.api("POST", "experiments/search", {"max_results": 1000}, headers={"X-MLFLOW-WORKSPACE": other})
        assert peek.status_code in (200, 403) and made[other] not in {
            e["experiment_id"] for e in peek.json().get("experiments", [])
        }
        intruder = member.api("POST", "experiments/create", {"name": unique("intruder")}, headers={"X-MLFLOW-WORKSPACE": other})
        assert intruder.status_code == 403
    listed = cli(lab, "workspaces", "list").stdout.splitlines()
    for workspace, member in teams.items():
        assert f"{workspace}  {member.name}" in listed
    outside = {
        e["experiment_id"] for e in crew["admin"].api("POST", "experiments/search", {"max_results": 1000}).json()["experiments"]
    }
    assert not set(made.values()) & outside, "the default workspace shows no team's experiments"


def test_a_removed_account_or_an_old_password_is_refused_within_the_cache_lifetime(lab):
    name = unique("leaver")
    person = Person(lab, name, add(lab, name)[name])
    assert person.api("GET", "users/current").status_code == 200
    bound = 2 * int((lab.settings or {}).get("LAB_AUTH_CACHE_SECONDS", "5")) + 2
    users(lab, "reset-password", name)
    assert refused_within(person, bound)
    users(lab, "remove", name)
    assert refused_within(Person(lab, name, "whatever-it-was"), bound)


def refused_within(person: Person, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if person.api("GET", "experiments/search", {"max_results": 1}).status_code == 401:
            return True
        time.sleep(0.5)
    return False
