"""Compose's service names, as they appear in compose.yaml's variables, turned into loopback:
natively every service listens on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

LOOPBACK = "127.0.0.1"


def on_loopback(environment: Mapping[str, str], services: Collection[str]) -> dict[str, str]:
    """`environment` with each address of one of `services` on loopback: `mlflow:5001`,
    `http://mlflow:5001` and a `*_HOST` variable naming a service (POSTGRES_HOST=postgres)."""
    hosts = "|".join(re.escape(name) for name in services)
    address = re.compile(rf"(^|//)({hosts})(?=:\d)")
    env = {key: address.sub(rf"\g<1>{LOOPBACK}", value) for key, value in environment.items()}
    env.update({key: LOOPBACK for key, value in env.items() if key.endswith("_HOST") and value in services})
    return env
