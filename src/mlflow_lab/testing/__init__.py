"""The lab as a test kit: throwaway labs for test suites, the lab's own and users'.

- `mlflow_lab.testing.stacks`: `throwaway_lab()` brings a lab up on free loopback ports with a
  throwaway `.env` (Compose when a Docker engine answers, else native) and removes it, data
  and all, afterwards; `running_lab()` connects to one that is already up.
- `mlflow_lab.testing.plugin`: the pytest plugin (entry point `pytest11`), whose session
  fixtures `mlflow_lab` and `mlflow_lab_client` hand a test suite a lab and an MLflow client.

See docs/testing.md.
"""
