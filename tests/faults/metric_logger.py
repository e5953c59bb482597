"""A training client as the fault tests see one: a thread logging a metric every ~100 ms."""

from __future__ import annotations

import threading
import time


class MetricLogger:
    """Logs metric `key` into `run` with `client` every ~100 ms (value 1/(step+1)) until the
    `with` block ends. `logged`: (step, value, time.monotonic() when acknowledged);
    `failures`: (step, first line of the error) for the steps the client gave up on."""

    def __init__(self, client, run: str, key: str = "loss", join_timeout: float = 120):
        self.client, self.run, self.key, self.join_timeout = client, run, key, join_timeout
        self.logged: list[tuple[int, float, float]] = []
        self.failures: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._log)

    def _log(self) -> None:
        step = 0
        while not self._stop.is_set():
            value = 1.0 / (step + 1)
            try:
                self.client.log_metric(self.run, self.key, value, step=step)
                self.logged.append((step, value, time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - a clear error is an allowed outcome; recorded
                self.failures.append((step, str(exc).splitlines()[0]))
            step += 1
            time.sleep(0.1)

    def steps(self) -> list[int]:
        return [step for step, _, _ in self.logged]

    def __enter__(self) -> MetricLogger:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.join_timeout)
