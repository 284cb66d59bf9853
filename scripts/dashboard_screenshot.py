"""Serve the dashboard and drive headless Chromium against it: the README screenshot, and the browser test's harness.

    python scripts/dashboard_screenshot.py docs/images/dashboard.png   # Gold from DBT_DUCKDB_PATH (or warehouse.duckdb_path)

Chromium and chromedriver are Debian's (/usr/bin/chromium, /usr/bin/chromedriver), driven by Selenium.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboard" / "app.py"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The parts of the page that are drawn once Gold has been read (stable container keys in dashboard/app.py).
CHART_KEYS = ("candles-chart", "treemap-chart", "volatility-chart")
KPI_LABELS = ("Last price", "Change", "% change", "Volume")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _healthy(url: str) -> bool:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:  # noqa: S310 - checked above
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextmanager
def serve(env: Mapping[str, str], log_path: Path, port: int | None = None, timeout: float = 120,
          cwd: Path = REPO) -> Iterator[str]:
    """`streamlit run dashboard/app.py` on 127.0.0.1 in its own process group; yields its URL once healthy.
    A relative DBT_DUCKDB_PATH (or warehouse.duckdb_path) resolves against `cwd`."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
               "--server.port", str(port), "--server.headless", "true", "--server.fileWatcherType", "none",
               "--client.toolbarMode", "viewer"]
    env = {**env, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        # noqa below: S603, an argv list (no shell): this venv's python running streamlit on the repo's app.
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if process.poll() is not None:
                raise RuntimeError(f"the dashboard exited with {process.returncode}; log: {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard was not healthy after {timeout:.0f}s; log: {log_path}")
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@contextmanager
def chromium(width: int = 1600, height: int = 2200) -> Iterator["webdriver.Chrome"]:  # noqa: F821
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: Chromium's sandbox cannot run as root (CI containers); the page is our own local app.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def kpi_cards(driver) -> dict[str, str]:
    """The selected symbol's KPI cards as {label: value} (empty while they are not drawn)."""
    from selenium.webdriver.common.by import By

    cards = {}
    for metric in driver.find_elements(By.CSS_SELECTOR, '.st-key-kpi-cards [data-testid="stMetric"]'):
        label = metric.find_element(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]').text.strip()
        cards[label] = metric.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]').text.strip()
    return cards


def plotly_traces(driver, key: str) -> list[dict]:
    """The traces plotly.js drew in the chart under container `key`: name, type, candle closes, x / y and
    treemap labels (None until the chart is drawn)."""
    return driver.execute_script("""
        const plot = document.querySelector(`.st-key-${arguments[0]} .js-plotly-plot`);
        if (!plot || !plot._fullData) { return null; }
        const list = (values) => values === undefined || values === null ? null : Array.from(values);
        return plot._fullData.map((trace) => ({
            name: trace.name, type: trace.type, x: list(trace.x), close: list(trace.close), y: list(trace.y),
            labels: list(trace.labels)}));
    """, key)


def select_symbol(driver, symbol: str, timeout: float = 30) -> None:
    """Pick `symbol` in the symbol selectbox the way a user does: type it, click its option."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element(By.CSS_SELECTOR, '.st-key-symbol input[role="combobox"]')
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(symbol)
    option = (By.XPATH, f'//*[@role="option"][starts-with(normalize-space(.), "{symbol} ·")]')
    WebDriverWait(driver, timeout).until(expected_conditions.element_to_be_clickable(option),
                                         f"the {symbol} option").click()


def page_current(driver) -> bool:
    """Whether the page has finished re-running (no element marked data-stale: Streamlit is re-running the script
    and it may still change); raises at once when it shows an exception box."""
    from selenium.webdriver.common.by import By

    if driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'):
        raise AssertionError("the dashboard shows an exception: "
                             + driver.find_element(By.CSS_SELECTOR, '[data-testid="stException"]').text)
    return not driver.find_elements(By.CSS_SELECTOR, '[data-stale="true"]')


def wait_for_dashboard(driver, timeout: float = 90) -> None:
    """Until the KPI cards and every chart are drawn and current; fails at once on an exception box."""
    from selenium.webdriver.support.ui import WebDriverWait

    def drawn(driver) -> bool:
        return (page_current(driver) and set(KPI_LABELS) <= set(kpi_cards(driver))
                and all(plotly_traces(driver, key) for key in CHART_KEYS))

    WebDriverWait(driver, timeout, poll_frequency=0.25).until(drawn, "the dashboard's KPI cards and charts")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--log", type=Path, default=REPO / ".lake" / "logs" / "dashboard-screenshot.log")
    args = parser.parse_args(argv)
    with serve(os.environ, args.log) as url, chromium(args.width, args.height) as driver:
        driver.get(url)
        wait_for_dashboard(driver)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.output))
    print(f"dashboard_screenshot: wrote {args.output} ({args.output.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
