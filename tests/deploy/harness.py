"""Containers started the way Kubernetes, KServe or SageMaker start them, with no network:
requests are made from inside the container's own network namespace (`docker exec`), so
nothing can reach, or be reached from, anything but the container itself."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

# Runs inside the container (the lab's image has Python): one HTTP request, the answer as JSON.
_REQUEST = """
import json, sys, urllib.error, urllib.request
method, url, content_type = sys.argv[1:4]
body = sys.stdin.buffer.read() or None
request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        status, headers, text = response.status, dict(response.headers), response.read().decode()
except urllib.error.HTTPError as error:
    status, headers, text = error.code, dict(error.headers), error.read().decode()
except OSError as error:
    status, headers, text = 0, {}, str(error)
print(json.dumps({"status": status, "headers": {k.lower(): v for k, v in headers.items()}, "body": text}))
"""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    def json(self):
        return json.loads(self.body)


@dataclass
class Container:
    image: str
    args: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    read_only_mounts: dict[Path, str] = field(default_factory=dict)  # host path -> container path
    read_only_root: bool = False
    user: str | None = None
    name: str = field(default_factory=lambda: f"mlflow-lab-test-{uuid.uuid4().hex[:8]}")

    def __enter__(self) -> Container:
        command = ["docker", "run", "--detach", "--name", self.name, "--network", "none"]
        if self.read_only_root:
            command += ["--read-only", "--tmpfs", "/tmp"]
        if self.user:
            command += ["--user", self.user]
        for source, target in self.read_only_mounts.items():
            command += ["--volume", f"{source}:{target}:ro"]
        for key, value in self.env.items():
            command += ["--env", f"{key}={value}"]
        if self.entrypoint:
            command += ["--entrypoint", self.entrypoint[0]]
            args = [*self.entrypoint[1:], *self.args]
        else:
            args = self.args
        subprocess.run([*command, self.image, *args], check=True, capture_output=True, text=True)
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["docker", "rm", "--force", self.name], capture_output=True)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | None = None,
        content_type: str = "application/json",
        port: int = 8080,
    ) -> Answer:
        data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body or b""
        result = subprocess.run(
            ["docker", "exec", "-i", self.name, "python", "-c", _REQUEST, method, f"http://127.0.0.1:{port}{path}", content_type],
            input=data,
            capture_output=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise AssertionError(f"request in {self.name} failed: {result.stderr.decode()[-500:]}\n{self.logs()}")
        return Answer(**json.loads(result.stdout))

    def wait_until(self, path: str, timeout: float = 180) -> float:
        """Seconds from `docker run` until GET path answers 200."""
        while time.monotonic() - self.started < timeout:
            if self.running() and self.request("GET", path).status == 200:
                return time.monotonic() - self.started
            if not self.running():
                raise AssertionError(f"{self.name} exited:\n{self.logs()}")
            time.sleep(0.5)
        raise AssertionError(f"{self.name}: {path} not 200 within {timeout} s:\n{self.logs()}")

    def running(self) -> bool:
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", self.name], capture_output=True, text=True)
        return state.stdout.strip() == "true"

    def logs(self) -> str:
        result = subprocess.run(["docker", "logs", "--tail", "40", self.name], capture_output=True, text=True)
        return result.stdout + result.stderr

    def python(self, code: str, *args: str) -> str:
        """Run Python code inside the container (its own network namespace); its stdout."""
        result = subprocess.run(
            ["docker", "exec", self.name, "python", "-c", code, *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr[-1000:]
        return result.stdout.strip()

    def user_id(self) -> str:
        return subprocess.run(
            ["docker", "exec", self.name, "id", "-u"], capture_output=True, text=True, check=True
        ).stdout.strip()
