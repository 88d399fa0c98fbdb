"""Real browser: start a smoke training run from the Train page, watch its progress move, see the confusion
matrix of the finished run."""

from __future__ import annotations

import re

import pytest

from browser import browser_page, shot, streamlit_server, wait_app_idle
from waiting import wait_moving

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_smoke_run_from_the_browser(fer2013_workspace):
    with streamlit_server({"FER_CACHE_DIR": str(fer2013_workspace)}) as url, browser_page(1400, 1400) as page:
        page.goto(f"{url}/Train")
        wait_app_idle(page)
        page.get_by_role("button", name="Start training").click()
        # progress: the step counter of the train stage must move while we watch; the wait for the result fails
        # only when nothing on the page has moved for a while (a slow machine is not a failure, a stuck run is)
        seen = []
        done = page.get_by_text(re.compile(r"Test accuracy \d")).first

        def bars() -> tuple:
            texts = tuple(page.locator('[data-testid="stMain"] [data-testid="stProgress"]').all_inner_texts())
            for t in texts:
                m = re.search(r"train: ([\d,]+) / ([\d,]+)", t)
                if m:
                    seen.append(int(m.group(1).replace(",", "")))
            return texts

        wait_moving(lambda: len(set(seen)) >= 3 or done.count() > 0, bars, what="the training run's progress",
                    stall=300)
        assert len(set(seen)) >= 2, f"no moving progress seen: {seen}"
        shot(page, "train-progress")
        wait_moving(lambda: done.count() > 0, bars, what="the training run started from the page", stall=300)
        wait_app_idle(page)
        page.get_by_role("tab", name="Runs").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.js-plotly-plot')].some(p => p.data && p.data.some(d => d.type === 'heatmap'))",
            timeout=60_000)
        assert page.get_by_text("Confusion matrix").first.is_visible()
        shot(page, "train-results")
