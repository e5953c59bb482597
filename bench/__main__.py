"""Run every benchmark against one throwaway native stack and print the results."""

from __future__ import annotations

import platform
import os

from bench import tracking
from mlflow_lab.native.ephemeral import ephemeral_stack


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with ephemeral_stack() as stack:
        tracking.run(stack)


if __name__ == "__main__":
    main()
