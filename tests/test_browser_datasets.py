"""Real browser: download FER2013 from the Datasets page (fake Kaggle), watch the progress bar, see the summary."""

from __future__ import annotations

import time

import pytest

from browser import browser_page, shot, streamlit_server, wait_app_idle

pytestmark = pytest.mark.browser


def test_deep_link_on_fresh_server(fake_kaggle):
    with streamlit_server(fake_kaggle.env(with_creds=False)) as url, browser_page() as page:
        page.goto(f"{url}/Datasets")
        page.get_by_role("heading", name="Datasets").first.wait_for()
        wait_app_idle(page)
        assert page.get_by_text("No Kaggle credentials yet").is_visible()
        # the sidebar shows the page list and the home page works too
        page.goto(url)
        page.get_by_text("FER Curation Studio").first.wait_for()


def test_download_from_page_with_progress_and_summary(fake_kaggle):
    fake_kaggle.drop_after = None
    with streamlit_server(fake_kaggle.env(with_creds=False)) as url, browser_page() as page:
        page.goto(f"{url}/Datasets")
        wait_app_idle(page)
        page.get_by_role("textbox", name="Kaggle username").fill(fake_kaggle.username)
        page.get_by_role("textbox", name="Kaggle key").fill(fake_kaggle.key)
        page.get_by_role("button", name="Use these credentials").click()
        page.get_by_text(f"Using credentials of {fake_kaggle.username}").wait_for()
        page.get_by_role("button", name="Download and import").click()
        seen = []
        deadline = time.time() + 240
        while time.time() < deadline:
            bars = page.locator('[data-testid="stMain"] [data-testid="stProgress"] [role="progressbar"]')
            if bars.count():
                try:
                    v = bars.first.get_attribute("aria-valuenow", timeout=1000)
                    txt = page.locator('[data-testid="stMain"] [data-testid="stProgress"]').first.inner_text(timeout=1000)
                    seen.append((float(v or 0), txt.split(":")[0]))
                except Exception:  # noqa: BLE001 - the bar can vanish between the two reads
                    pass
                if len(seen) == 3:
                    shot(page, "datasets-download-progress")
            if page.get_by_role("heading", name="Summary: fer2013").count():
                break
            page.wait_for_timeout(250)
        assert page.get_by_role("heading", name="Summary: fer2013").count(), "summary never appeared"
        values = [v for v, _ in seen]
        assert len(set(values)) >= 3, f"progress bar did not move: {seen}"
        stages = {s for _, s in seen}
        assert any("download" in s for s in stages) and any("catalog" in s or "extract" in s for s in stages)
        wait_app_idle(page)
        page.locator('[data-testid="stMetricValue"]').filter(has_text="35,887").first.wait_for()
        shot(page, "datasets-summary")
