import requests
from forecast import fit_and_log


def test_the_run_is_on_the_lab_with_its_metric_and_artifact(mlflow_lab, mlflow_lab_client):
    run_id = fit_and_log([0, 1, 2, 3], [1, 3, 5, 7])
    run = mlflow_lab_client.get_run(run_id)
    assert run.data.metrics == {"slope": 2.0}
    assert run.data.params == {"points": "4"}
    assert mlflow_lab_client.download_artifacts(run_id, "line.json")
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), "artifacts go through the lab's server"


def test_the_lab_wants_credentials(mlflow_lab):
    response = requests.get(f"{mlflow_lab.url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
    assert response.status_code == 401
