"""Real-browser helpers: start the Streamlit server on 127.0.0.1 and Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"   # screenshots; git-ignored
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--no-proxy-server"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_chromium():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
                    ".ci/run does this before the tests.")


@contextmanager
def streamlit_server(env_extra: dict | None = None, timeout: float = 90):
    port = free_port()
    env = dict(os.environ)
    env.update(env_extra or {})
    env["PYTHONPATH"] = str(ROOT)
    log = open(ARTIFACTS.joinpath(f"streamlit-{port}.log") if ARTIFACTS.mkdir(exist_ok=True) is None else os.devnull, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    # No proxy, whatever the environment says: urllib's global opener keeps the proxies of its first use (in this
    # process that may be a Kaggle test's fake proxy, gone since), and would send the health check there.
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with direct.open(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start (see {log.name})")
            time.sleep(0.3)
        yield url
    finally:
        import signal
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except Exception:  # noqa: BLE001
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = b.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            b.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    p = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(p), full_page=True)
    return p


def wait_app_idle(page, timeout: float = 60_000):
    """Wait until Streamlit finished the current script run: the app's own script state (set on the client as
    soon as a widget asks for a rerun) says "notRunning" and the status widget does not say "Running" (it shows
    only after a delay, so it alone lets a wait pass before the run has started)."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout)
    page.wait_for_function(
        "() => { const app = document.querySelector('[data-testid=\"stApp\"]');"
        " const state = app && app.dataset.testScriptState;"
        " const status = document.querySelector('[data-testid=\"stStatusWidget\"]');"
        " return (!state || state === 'notRunning') && (!status || !status.innerText.includes('Running')); }",
        timeout=timeout)


def act_until(page, act, settled, tries: int = 3, each: float = 20_000):
    """``act()`` (a click or a key) and wait for ``settled(timeout_ms)``; when it does not come, wait for the app
    to finish its run and act again — what a person does when a click lands while Streamlit is redrawing the
    page. Used only for idempotent inputs (select all, open an image), where a second try cannot change the
    outcome the test asserts. On a loaded CI machine (three test workers on 2 cores) such an input was lost about
    once in six full runs (2026-11-30); the last try's timeout propagates."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for k in range(tries):
        act()
        try:
            settled(each)
            return
        except PlaywrightTimeout:
            if k == tries - 1:
                raise
            wait_app_idle(page)
