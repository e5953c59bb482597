"""A 200 MB artifact streams through nginx both ways and comes back intact."""

import hashlib
import os
import uuid

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow]
SIZE = 200 * 1024 * 1024


def write_random(path, size) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as fh:
        for _ in range(size // (8 << 20)):
            block = os.urandom(8 << 20)
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


def test_200mb_round_trip(mlflow_client, tmp_path):
    source = tmp_path / "big.bin"
    expected = write_random(source, SIZE)
    run = mlflow_client.create_run(mlflow_client.create_experiment(f"test-large-{uuid.uuid4().hex[:8]}"))
    mlflow_client.log_artifact(run.info.run_id, str(source))
    source.unlink()
    downloaded = mlflow_client.download_artifacts(run.info.run_id, "big.bin", str(tmp_path))
    assert os.path.getsize(downloaded) == SIZE
    digest = hashlib.sha256()
    with open(downloaded, "rb") as fh:
        for block in iter(lambda: fh.read(8 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == expected
