"""nginx is the only door: basic auth on everything but health, unknown hosts refused."""

import re

import pytest
import requests

pytestmark = pytest.mark.stack
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"


def test_no_credentials_is_401(lab):
    response = requests.get(lab.url + SEARCH, timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_wrong_password_is_401(lab):
    response = requests.get(lab.url + SEARCH, auth=(lab.user, lab.password + "x"), timeout=10)
    assert response.status_code == 401


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
