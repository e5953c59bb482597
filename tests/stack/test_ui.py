"""MLflow's UI through nginx in a real browser: Debian's Chromium, headless, driven by Selenium.

Without credentials the browser gets 401; with them the experiments page, the tuning run
with its child runs, a run's plot and the Models page (the model in Production) render, and
an experiment's Traces tab lists its traces and opens one with its span tree, with no error
in the browser's console. A failing page leaves a screenshot (its path is in the
failure message). The browser resolves no name but 127.0.0.1 and uses no proxy.
"""

from __future__ import annotations

import base64
from pathlib import Path

import mlflow
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

from mlflow_lab.jobs import promote, train_wine
from tests.browser import CHROMEDRIVER, CHROMIUM, ensure_browser
from tests.stack.people import add, unique, users

pytestmark = pytest.mark.stack
MODEL = "ui-wine"  # its own experiment and model: the other tests' versions stay as they expect
FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def trained(lab, mlflow_client):
    """wine's tuning run with its child runs, version 1 in Production."""
    runs = train_wine.train(experiment=MODEL, register_as=MODEL, n_iter=3)
    promote.promote(mlflow_client, MODEL, "1", force=True)
    tuning = mlflow_client.get_run(runs["hyperparameter-tuning"][0])
    children = mlflow_client.search_runs([tuning.info.experiment_id], f"tags.mlflow.parentRunId = '{tuning.info.run_id}'")
    assert len(children) == 3
    return tuning, [child.info.run_name for child in children]


@pytest.fixture(scope="module")
def traced(lab, mlflow_client):
    """An experiment with two traces of a small agent, as MLflow's client logs them through nginx:
    a root, a retriever and a generation under it, a tool call under the generation. Returns the
    experiment, the trace ids, and the first trace's span ids by name."""
    experiment_id = mlflow_client.create_experiment(unique("ui-traces"))
    trace_ids, span_ids = [], {}
    for question in ("What does the lab run?", "Where are the artifacts?"):
        root = mlflow.start_span_no_context(
            "answer-question", span_type="AGENT", inputs={"question": question}, experiment_id=experiment_id
        )
        retrieve = mlflow.start_span_no_context(
            "retrieve-docs", span_type="RETRIEVER", parent_span=root, inputs={"query": question}
        )
        retrieve.end(outputs=[{"page_content": "docs/architecture.md"}])
        generate = mlflow.start_span_no_context("generate-answer", span_type="LLM", parent_span=root, inputs={"prompt": question})
        tool = mlflow.start_span_no_context(
            "lookup-setting", span_type="TOOL", parent_span=generate, inputs={"name": "S3_BUCKET"}
        )
        tool.end(outputs={"value": "mlflow"})
        generate.end(outputs={"text": f"An answer to: {question}"})
        root.end(outputs={"answer": f"An answer to: {question}"})
        trace_ids.append(root.trace_id)
        span_ids = span_ids or {span.name: span.span_id for span in (root, retrieve, generate, tool)}
    mlflow.flush_trace_async_logging()
    return experiment_id, trace_ids, span_ids


@pytest.fixture
def browser(tmp_path_factory):
    ensure_browser()
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.screenshots = tmp_path_factory.mktemp("ui-screenshots")  # type: ignore[attr-defined]
    yield driver
    driver.quit()


def ui(lab, route: str, workspace: str = "default") -> str:
    """A page of the UI in a workspace (workspaces are on: without one the UI asks for one)."""
    return f"{lab.url}/#{route}?workspace={workspace}"


# Chromium reports to window.onerror that a ResizeObserver's notifications were put off to the
# next frame (its callback changed the layout it observes: the trace view's panels do); MLflow's
# UI logs that as an error. It is a notice of the layout engine, not a failure of the page: the
# one console message the tests let pass, exactly this one.
BENIGN = {'"ResizeObserver loop completed with undelivered notifications."'}


def console_errors(driver) -> list[str]:
    entries = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return [message for message in entries if message.rsplit(" null ", 1)[-1] not in BENIGN]


def page(driver, url: str, shows, name: str) -> None:
    """Open `url`; wait until `shows(driver)` holds, and the console stays free of errors."""
    driver.get(url)
    try:
        WebDriverWait(driver, 45, poll_frequency=0.5).until(shows)
        assert console_errors(driver) == []
    except Exception as exc:
        shot = Path(driver.screenshots) / f"{name}.png"
        driver.save_screenshot(str(shot))
        raise AssertionError(f"{name} ({url}): {exc!r}; screenshot {shot}") from None


def text(driver) -> str:
    return driver.find_element("tag name", "body").text


def log_in(driver, user: str, password: str) -> None:
    """Basic auth on every request of the page, as the browser sends it after its login prompt."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})


def test_without_credentials_the_browser_gets_401_and_no_ui(lab, browser):
    browser.get(ui(lab, "/experiments"))
    errors = console_errors(browser)
    assert any("status of 401" in error for error in errors), errors
    assert "Experiments" not in text(browser)


def test_pages_render_with_no_console_errors(lab, trained, browser):
    tuning, children = trained
    log_in(browser, lab.user, lab.password)
    run = f"/experiments/{tuning.info.experiment_id}/runs/{tuning.info.run_id}"

    page(browser, ui(lab, "/experiments"), lambda d: MODEL in text(d).splitlines(), "experiments")
    page(
        browser,
        ui(lab, run),
        lambda d: {"hyperparameter-tuning", "Child runs"} <= set(text(d).splitlines()) and all(c in text(d) for c in children),
        "tuning-run",
    )

    def plot_drawn(d) -> bool:
        images = d.find_elements("css selector", "img[src^='blob:']")
        return any(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i) for i in images)

    page(browser, ui(lab, f"{run}/artifacts/plots/predicted_vs_actual.png"), plot_drawn, "plot-artifact")
    page(browser, ui(lab, "/models"), lambda d: MODEL in text(d).splitlines() and "@ champion" in text(d), "models")
    page(
        browser,
        ui(lab, f"/models/{MODEL}/versions/1"),
        lambda d: {"Stage (deprecated)", "Production"} <= set(text(d).splitlines()),
        "model-version",
    )


def test_the_traces_tab_lists_the_traces_and_a_trace_opens_with_its_span_tree(lab, traced, browser):
    experiment_id, trace_ids, span_ids = traced
    log_in(browser, lab.user, lab.password)

    def listed(d) -> bool:
        lines = text(d).splitlines()
        questions = {'{"question": "What does the lab run?"}', '{"question": "Where are the artifacts?"}'}
        # The lab's retention (LAB_TRACE_RETENTION, 30d), as the tab shows it.
        return questions <= set(lines) and "2 of 2" in lines and "Archive after: 30 days" in lines

    page(browser, ui(lab, f"/experiments/{experiment_id}/traces"), listed, "traces-tab")

    def left_edge(d, name: str) -> float:
        return d.find_element("css selector", f"[data-testid='span-icon-{span_ids[name]}']").rect["x"]

    def span_tree(d) -> bool:
        """Every span in the tree, each indented one step under its parent; the two spans with
        children (and only they) can be folded."""
        if not d.find_elements("css selector", f"[data-testid='span-icon-{span_ids['lookup-setting']}']"):
            return False
        x = {name: left_edge(d, name) for name in span_ids}
        foldable = {
            name
            for name, span_id in span_ids.items()
            if d.find_elements("css selector", f"[data-testid='toggle-span-expanded-{span_id}']")
        }
        return x["answer-question"] < x["retrieve-docs"] == x["generate-answer"] < x["lookup-setting"] and foldable == {
            "answer-question",
            "generate-answer",
        }

    page(browser, ui(lab, f"/experiments/{experiment_id}/traces/{trace_ids[0]}"), span_tree, "trace-detail")


def test_a_viewer_sees_the_pages_and_cannot_write_from_them(lab, trained, browser):
    name = unique("ui-viewer")
    log_in(browser, name, add(lab, name, role="viewer")[name])
    try:
        page(browser, ui(lab, "/experiments"), lambda d: MODEL in text(d).splitlines(), "viewer-experiments")
        page(browser, ui(lab, "/models"), lambda d: MODEL in text(d).splitlines(), "viewer-models")
        # What the UI's "Create experiment" sends, from the page itself.
        status = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('ajax-api/2.0/mlflow/experiments/create', {method: 'POST', headers: {'Content-Type': 'application/json'},"
            " body: JSON.stringify({name: arguments[0]})}).then(r => done(r.status));",
            unique("from-the-ui"),
        )
        assert status == 403
    finally:
        users(lab, "remove", name)
