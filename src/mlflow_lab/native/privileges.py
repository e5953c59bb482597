"""Dropping privileges: who runs the services that need only system binaries, and where their files live.

PostgreSQL refuses to run as root; nginx should not either. When the runner is root they drop
to UNPRIVILEGED_USER. (The Python services keep the invoking user: the interpreter may live in
a directory only that user can read.)
"""

from __future__ import annotations

import hashlib
import os
import pwd
from pathlib import Path

UNPRIVILEGED_USER = "nobody"
# ...who must reach their files: when the state directory sits in a private place (a 0700
# home or `mktemp -d`), theirs move here, one folder per state directory.
UNPRIVILEGED_ROOT = Path("/var/lib/mlflow-lab")


def unprivileged_user() -> str | None:
    """The user PostgreSQL and nginx run as: UNPRIVILEGED_USER under root, else the runner's own (None)."""
    return UNPRIVILEGED_USER if os.geteuid() == 0 else None


def reachable_by_others(path: Path) -> bool:
    """Every existing directory on the way to `path` lets other users through (o+x)."""
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents) if p.exists())


def private_dir(state: Path, user: str | None) -> Path:
    """Where the unprivileged services' files live (PostgreSQL's data, nginx's runtime files):
    the state directory itself, unless `user` could not reach into it."""
    if user is None or reachable_by_others(state):
        return state
    return UNPRIVILEGED_ROOT / hashlib.sha256(str(state).encode()).hexdigest()[:12]


def hand_over(path: Path, user: str | None) -> None:
    """Make `user` the owner of `path` (nothing to do when no user is named)."""
    if user:
        owner = pwd.getpwnam(user)
        os.chown(path, owner.pw_uid, owner.pw_gid)
