"""Real browser (issue 15): the menu says "Home", a page opened before any import links to Datasets, and the Train
page's queue note follows the jobs live (it used to stay after the job it named had ended)."""

from __future__ import annotations

import time

import pytest

from browser import browser_page, shot, streamlit_server, wait_app_idle
from test_app_pages_polish import fake_job

pytestmark = pytest.mark.browser


def test_menu_says_home_and_an_empty_page_links_to_datasets():
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/Review")
        page.get_by_text("There is no dataset yet").first.wait_for(timeout=60_000)
        wait_app_idle(page)
        nav = page.locator('[data-testid="stSidebar"]')
        assert nav.get_by_role("link", name="Home").count() == 1
        assert nav.get_by_role("link", name="app", exact=True).count() == 0
        assert page.locator('[data-testid="stSidebarNav"]').count() == 0      # the built-in menu is hidden
        assert page.get_by_text("Server work").count() == 0                    # debug footer off
        shot(page, "empty-review")
        page.locator('[data-testid="stMain"]').get_by_role("link", name="Go to Datasets").click()
        page.get_by_role("heading", name="Datasets").first.wait_for(timeout=60_000)
        assert page.url.rstrip("/").endswith("/Datasets")
        nav.get_by_role("link", name="Home").click()
        page.get_by_role("heading", name="FER Curation Studio").first.wait_for(timeout=60_000)


def test_train_page_queue_note_goes_when_the_job_ends(tmp_path, fer_sample, live_pid):
    from conftest import import_and_scan
    from fer_core.progress import atomic_write_json
    from fer_core.store_paths import jobs_root

    import_and_scan(tmp_path, dict(list(fer_sample.items())[:40]), "tiny", scan=False)
    jid = fake_job("ab", "tiny", "running", live_pid.pid, time.time() - 3)
    note = "A raw-vs-curated A/B of this dataset is running"
    with streamlit_server() as url, browser_page() as page:
        page.goto(f"{url}/Train")
        page.get_by_text(note).first.wait_for(timeout=60_000)
        wait_app_idle(page)
        atomic_write_json(jobs_root() / jid / "progress.json", {"state": "done", "stages": {}, "updated": time.time()})
        live_pid.stdin.close()
        live_pid.wait(10)
        # no reload, no click: the note is read live and disappears
        page.get_by_text(note).first.wait_for(state="detached", timeout=20_000)
        shot(page, "train-queue-note-gone")
