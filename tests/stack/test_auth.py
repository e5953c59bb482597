"""nginx is the only door: MLflow's accounts on everything but health, unknown hosts refused."""

import re

import pytest
import requests

pytestmark = pytest.mark.stack
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


# Every kind of path nginx closes: UI, REST and ajax APIs, artifact proxy, GraphQL, OTLP
# traces, MLflow's account pages, the model API (REST) and its repository API.
CLOSED = [
    ("GET", "/"),
    ("GET", SEARCH),
    ("POST", "/ajax-api/2.0/mlflow/experiments/search"),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts"),
    ("POST", "/graphql"),
    ("POST", "/v1/traces"),
    ("GET", "/signup"),
    ("GET", "/api/2.0/mlflow/users/list"),
    ("POST", "/models/wine-quality/invocations"),
    ("POST", "/v2/models/wine-quality/infer"),
    ("POST", "/v2/repository/index"),
]


@pytest.mark.parametrize("method, path", CLOSED)
def test_no_credentials_or_a_wrong_password_is_401(lab, method, path):
    anonymous = requests.request(method, lab.url + path, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.request(method, lab.url + path, auth=(lab.user, lab.password + "x"), timeout=10)
    assert wrong.status_code == 401


def test_wrong_user_is_401(lab):
    assert requests.get(lab.url + SEARCH, auth=("someone", lab.password), timeout=10).status_code == 401


def test_health_is_open(lab):
    response = requests.get(lab.url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.text.strip() == "OK"


def test_unknown_host_is_refused(lab):
    response = requests.get(lab.url + "/health", headers={"Host": "attacker.example"}, timeout=10)
    assert response.status_code == 421
    assert "LAB_SERVER_NAMES" in response.json()["error"]


def test_api_with_credentials(lab):
    response = lab.session().get(lab.url + SEARCH, timeout=10)
    assert response.status_code == 200
    assert "experiments" in response.json()


def test_ui_page_is_served(lab):
    response = lab.session().get(lab.url + "/", timeout=10)
    assert response.status_code == 200
    assert "text/html" in response.headers["Content-Type"]
    assert "<title>MLflow</title>" in response.text
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_ui_assets_are_compressed_and_cacheable(lab):
    page = lab.session().get(lab.url + "/", timeout=10).text
    script = re.search(r'src="([^"]*static-files/static/js/[^"]+\.js)"', page).group(1)
    response = lab.session().get(f"{lab.url}/{script.lstrip('./')}", headers={"Accept-Encoding": "gzip"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "max-age=604800" in response.headers["Cache-Control"]


def test_ui_origin_may_write(lab):
    """The UI's own POSTs carry an Origin header: MLflow's CORS check must accept it."""
    origin = lab.url.replace("127.0.0.1", "localhost")
    response = lab.session().post(
        lab.url + "/ajax-api/2.0/mlflow/experiments/search", json={"max_results": 1}, headers={"Origin": origin}, timeout=10
    )
    assert response.status_code == 200, response.text
