"""Accounts (`lab users`), held by MLflow's auth app: each logs in through nginx, passwords
are shown once and stored only as hashes, roles change, and bad names change nothing."""

from __future__ import annotations

import contextlib

import pytest

from tests.stack.people import Person, add, unique, users

pytestmark = pytest.mark.stack


def stored_hashes(lab) -> dict[str, str]:
    """MLflow's user table, as the auth database keeps it."""
    connection = lab.postgres("POSTGRES_AUTH_DB")
    with contextlib.closing(connection), connection.cursor() as cur:
        cur.execute("SELECT username, password_hash FROM users")
        return dict(cur.fetchall())


def test_accounts_log_in_with_their_role_and_keep_no_clear_password(lab):
    prefix = unique("team").replace("-", "")
    names = [unique("alice"), unique("bob.k")]
    passwords = {
        **add(lab, *names),
        **dict(
            line.split()
            for line in users(lab, "add", "--count", "2", "--prefix", prefix, "--role", "viewer").stdout.splitlines()[1:]
        ),
    }
    assert list(passwords) == [*names, f"{prefix}01", f"{prefix}02"]
    assert all(len(p) >= 24 for p in passwords.values()) and len(set(passwords.values())) == 4
    try:
        for name, password in passwords.items():
            assert Person(lab, name, password).api("GET", "users/current").json()["user"]["username"] == name
            assert Person(lab, name, password + "x").api("GET", "users/current").status_code == 401

        listed = dict(line.split() for line in users(lab, "list").stdout.splitlines())
        assert {name: listed[name] for name in passwords} == {
            names[0]: "member",
            names[1]: "member",
            f"{prefix}01": "viewer",
            f"{prefix}02": "viewer",
        }
        assert lab.user not in listed and lab.settings["MODEL_API_USER"] not in listed, "the lab's own accounts are not listed"
        hashes = stored_hashes(lab)
        assert not any(password in value for value in hashes.values() for password in passwords.values())
        assert all(hashes[name].startswith(("pbkdf2:", "scrypt:")) for name in passwords)

        users(lab, "set-role", names[1], "viewer")
        assert dict(line.split() for line in users(lab, "list").stdout.splitlines())[names[1]] == "viewer"
        refused = Person(lab, names[1], passwords[names[1]]).api("POST", "experiments/create", {"name": unique("as-viewer")})
        assert refused.status_code == 403
    finally:
        users(lab, "remove", *passwords, check=False)
    assert not set(passwords) & {line.split()[0] for line in users(lab, "list").stdout.splitlines()}


def test_reset_password_shows_a_new_one_once(lab):
    name = unique("forgetful")
    old = add(lab, name)[name]
    try:
        lines = users(lab, "reset-password", name).stdout.splitlines()
        new = dict(line.split() for line in lines[1:])[name]
        assert new != old and Person(lab, name, new).api("GET", "users/current").status_code == 200
        assert new not in stored_hashes(lab)[name]
    finally:
        users(lab, "remove", name)


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
            "error: there is no account 'nobody-here' (the lab's own accounts cannot be changed here); nothing was changed.",
        ),
        (["add", "frank", "--role", "owner"], "error: no role 'owner'; the roles are admin, member, viewer."),
        (
            ["set-role", "nobody-here", "viewer"],
            "error: there is no account 'nobody-here' (the lab's own accounts cannot be changed here); nothing was changed.",
        ),
    ],
)
def test_bad_requests_are_one_sentence_and_change_nothing(lab, args, sentence):
    before = users(lab, "list").stdout
    result = users(lab, *args, check=False)
    assert (result.returncode, result.stdout, result.stderr.strip()) == (1, "", sentence)
    assert users(lab, "list").stdout == before


def test_the_lab_own_accounts_cannot_be_taken(lab):
    for name in (lab.user, lab.settings["MODEL_API_USER"]):
        result = users(lab, "add", name, check=False)
        assert result.stderr.strip() == f"error: '{name}' is an account of the lab itself; nothing was changed."
