"""The Dagster UI as a person uses it: `dagster dev -w workspace.yaml` on a free loopback port (temp DAGSTER_HOME and
data folder), driven by headless Chromium from Debian's `chromium` + `chromium-driver` packages through Selenium.

The test opens the global asset lineage, checks the groups and assets are there, selects `seed_templates` in the graph,
clicks "Materialize selected", waits for the run to succeed on the Runs page, and saves screenshots of the graph with
the materialized asset under test-artifacts/browser/ (git-ignored). A missing browser fails the test; set
RUVTRAIN_SKIP_BROWSER_TESTS=1 to opt out explicitly.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SKIP_ENV = "RUVTRAIN_SKIP_BROWSER_TESTS"
CHROMIUM = os.environ.get("RUVTRAIN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RUVTRAIN_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("RUVTRAIN_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "browser"
GROUPS = ("dataset", "training", "export", "evaluation", "feedback", "monitoring")
DATASET_ASSETS = ("seed_templates", "base_examples", "augmented_examples", "hard_negatives", "dataset_splits")
SERVER_START_S = 240  # the code location imports the whole pipeline; on a busy 2-core machine that takes a while
RUN_S = 300
STOP_S = 30


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(proc: subprocess.Popen, timeout_s: float = STOP_S) -> None:
    """Stop `dagster dev` by its own pid: SIGTERM to it (it shuts down the webserver, daemon and code servers it
    started), then SIGKILL to its process group (its own session, so nothing else is in it) for whatever is still
    there after `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while (proc.poll() is None or _group_alive(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def dagster_dev(tmp_path) -> Iterator[dict]:
    """`dagster dev` on 127.0.0.1:<free port> with a temp DAGSTER_HOME (the repo's instance config) and
    RUVTRAIN_DATA_DIR; stopped by its pid."""
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    # the project's own instance config (queued runs, the 'dvc' pool), its storage under the temp home
    shutil.copyfile(REPO_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "dagster-dev.log"
    port = _free_port()
    env = os.environ | {"DAGSTER_HOME": str(home), "RUVTRAIN_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1",
                        "RUVTRAIN_FEEDBACK_DIR": str(tmp_path / "feedback_inbox"), "PYTHONUNBUFFERED": "1"}
    dagster = Path(sys.executable).with_name("dagster")
    with log_path.open("w") as log:
        # its own session: a signal meant for it never reaches pytest, and its children share its process group
        proc = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n{_log_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as resp:  # noqa: S310 (loopback)
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster dev not serving after {SERVER_START_S}s:\n{_log_tail(log_path)}")
            time.sleep(1)
        yield {"url": url, "home": home, "data": data, "pid": proc.pid, "log": log_path}
    finally:
        stop_process_group(proc)


@pytest.fixture
def browser():
    """Headless Chromium through Debian's chromedriver; Selenium is told both paths so it downloads nothing."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: browser tests opted out")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `apt-get install -y chromium chromium-driver` (.ci/run does it), "
                    f"or set {SKIP_ENV}=1 to opt out of browser tests")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1920,1080", "--lang=en-US"):
        opts.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager: never fetch a driver or browser
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# ---------------------------------------------------------------- page helpers
def _wait(driver, what: str, cond: Callable, timeout: float = 60):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(cond)
    except TimeoutException:
        shot = ARTIFACTS / "failure.png"
        driver.save_screenshot(str(shot))
        pytest.fail(f"timed out after {timeout}s waiting for {what} (screenshot {shot}); page text:\n"
                    f"{_body(driver)[-2000:]}")


def _body(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _by_text(text: str, tag: str = "*") -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    return By.XPATH, f"//{tag}[normalize-space()='{text}' or normalize-space(text())='{text}']"


def _visible(driver, locator: tuple[str, str]):
    found = [e for e in driver.find_elements(*locator) if e.is_displayed()]
    return found[0] if found else False


def _graph_node(driver, asset: str):
    """The asset's node in the lineage graph (not its entry in the sidebar tree)."""
    from selenium.webdriver.common.by import By

    return _visible(driver, (By.XPATH, f"//div[contains(@class, 'AssetNode')][normalize-space()='{asset}']"))


def _dismiss_welcome(driver) -> None:
    """A fresh instance greets the first visit with a 'Join the Dagster community' dialog; skip it when shown."""
    time.sleep(1)
    for button in driver.find_elements(*_by_text("Skip", "button")):
        if button.is_displayed():
            button.click()


def _node_card(driver, asset: str) -> str:
    """Text of the asset's node card when the graph is zoomed in far enough to show details ('Materialized' or
    'Never materialized', checks); empty when it shows only names."""
    from selenium.webdriver.common.by import By

    card = _visible(driver, (By.XPATH, f"//div[contains(@class, 'AssetNode_assetNodeBox')][.//*[@data-tooltip='{asset}']]"))
    return card.text if card else ""


# ---------------------------------------------------------------- the test
def test_materialize_from_the_asset_graph_in_chromium(browser, dagster_dev, monkeypatch):
    from dagster import AssetKey, DagsterInstance, DagsterRunStatus
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, url = browser, dagster_dev["url"]
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()

    # 1. the global asset lineage lists every group, and expanding them shows every asset
    driver.get(f"{url}/asset-groups")
    _wait(driver, "the asset groups", lambda d: all(_visible(d, _by_text(g)) for g in GROUPS), SERVER_START_S)
    _dismiss_welcome(driver)
    assert "Global asset lineage" in _body(driver)
    gear = [e for e in driver.find_elements(By.CSS_SELECTOR, "[aria-label='settings']") if e.is_displayed()][-1]
    gear.click()  # the graph's settings menu (the last settings icon; the first is the app's)
    _wait(driver, "the graph settings menu", lambda d: _visible(d, _by_text("Expand all groups"))).click()
    all_assets = (*DATASET_ASSETS, "trained_adapter", "gguf_export", "evaluation_report", "feedback_examples",
                  "monitoring_report")
    _wait(driver, "every asset node", lambda d: all(_graph_node(d, a) for a in all_assets))
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    _wait(driver, "the settings menu to close", lambda d: not _visible(d, _by_text("Collapse all groups")))
    driver.save_screenshot(str(ARTIFACTS / "asset_graph_before.png"))

    # 2. select seed_templates in the graph and materialize it from the UI
    _graph_node(driver, "seed_templates").click()
    _wait(driver, "the asset side panel", lambda d: "The hand-written template library" in _body(d))
    assert "No materializations found" in _body(driver)
    started = time.monotonic()
    _wait(driver, "the 'Materialize selected' button", lambda d: _visible(d, _by_text("Materialize selected"))).click()

    # 3. the run shows up on the Runs page and succeeds
    _wait(driver, "the Runs link", lambda d: _visible(d, _by_text("Runs"))).click()
    _wait(driver, "the run in the runs list", lambda d: "Manually launched" in _body(d))
    finished = ("Success", "Failure", "Canceled")  # status tags of a finished run; the page polls for updates
    _wait(driver, "the run to finish", lambda d: any(f in _body(d) for f in finished), RUN_S)
    run_seconds = time.monotonic() - started
    runs_page = _body(driver)
    assert "Success" in runs_page, f"{runs_page}\n{_log_tail(dagster_dev['log'])}"
    assert "seed_templates" in runs_page and "templates_per_agent on seed_templates" in runs_page
    driver.save_screenshot(str(ARTIFACTS / "runs.png"))

    # 4. back on the lineage, the dataset group shows seed_templates materialized and the rest not yet
    _wait(driver, "the Lineage link", lambda d: _visible(d, _by_text("Lineage"))).click()
    _wait(driver, "the asset selection input", lambda d: _visible(d, (By.CSS_SELECTOR, ".CodeMirror"))).click()
    ActionChains(driver).send_keys("group:dataset", Keys.ENTER).perform()
    _wait(driver, "the dataset group alone", lambda d: _graph_node(d, "seed_templates") and not _graph_node(d,
                                                                                                    "trained_adapter"))
    for _ in range(3):  # zoom in until the nodes show their details
        if _node_card(driver, "seed_templates"):
            break
        driver.find_element(By.CSS_SELECTOR, "[aria-label='zoom_in']").click()
        time.sleep(1)

    def materialized_card(d):
        card = _node_card(d, "seed_templates")
        return card if "Materialized" in card and "Never materialized" not in card else False

    card = _wait(driver, "seed_templates shown as materialized", materialized_card)
    assert "1 / 1 Passed" in card, card  # its blocking check ran and passed
    assert "Never materialized" in _node_card(driver, "base_examples")
    shot = ARTIFACTS / "asset_graph_materialized.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    # 5. the UI told the truth: the instance has the successful run and the files are in the temp data folder
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_dev["home"]))  # the instance config reads its storage from it
    with DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(AssetKey("seed_templates"))
        assert event is not None
        assert instance.get_run_by_id(event.run_id).status == DagsterRunStatus.SUCCESS
    assert (dagster_dev["data"] / "seed_templates" / "catalog.json").exists()
    print(f"UI materialization of seed_templates: {run_seconds:.1f}s from click to success")
