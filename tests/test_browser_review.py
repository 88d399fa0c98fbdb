"""Real browser (Chromium): the Review queue by keyboard on real FER2013 images (issue 15 item 10): a/x tick
and untick the page, k/r/1-7 keep, reject and relabel the ticked images (also right after ticking one, with
the focus on its tick box), ←/→ turn pages, u undoes; R rejects instead of rerunning the app; a full page
rejected by keyboard asks first in a dialog naming the count. Tiles are large and no text is cut off."""

from __future__ import annotations

import pytest

from browser import act_until, browser_page, shot, streamlit_server, wait_app_idle
from fer_core import datasets, review
from test_app_review_ergonomics import planted_copies

pytestmark = pytest.mark.browser

JS_TICKED = ("() => Array.from(document.querySelectorAll('[class*=\"st-key-rv_sel_\"] input[type=checkbox]'))"
             ".filter(i => i.checked).length")
JS_IDS = ("() => Array.from(document.querySelectorAll('[class*=\"st-key-rv_sel_\"]')).map(e => "
          "Array.from(e.classList).find(c => c.startsWith('st-key-rv_sel_')).slice('st-key-rv_sel_'.length))")
# text cut off with an ellipsis anywhere in the queue (tick boxes, captions, buttons)
JS_CUT = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] *')).filter(e => e.innerText &&
  getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)"""


def _overrides_shown(page, n: int):
    """Wait until the page says ``n`` manual overrides (shown above the tabs, whichever tab is open)."""
    page.get_by_text(f"{n:,} manual override{'s' if n != 1 else ''}", exact=True).wait_for(timeout=60_000)
    wait_app_idle(page)


def _tiles_replaced(page, before: list[str], count: int | None = None, timeout: float = 60_000) -> list[str]:
    """Wait until the queue shows tiles (``count`` of them, when given) and none of them is one of ``before``
    (the page number changes on the client at once; the old tiles stay in the DOM until the rerun has drawn
    the new page, and the status widget may not say "Running" yet when we look), then return their ids."""
    page.wait_for_function(
        f"([before, count]) => {{ const ids = ({JS_IDS})(); "
        "return ids.length > 0 && (count === null || ids.length === count) && !ids.some(i => before.includes(i)); }",
        arg=[before, count], timeout=timeout)
    wait_app_idle(page)
    return page.evaluate(JS_IDS)


def test_review_queue_by_keyboard(tmp_path, fer_sample):
    planted_copies(tmp_path, fer_sample, "rvb")
    rs = review.store_for(datasets.load("rvb"))
    with streamlit_server() as url, browser_page(1500, 1200) as page:
        page.goto(f"{url}/Review")
        page.get_by_text("images match").first.wait_for(timeout=120_000)
        wait_app_idle(page)
        page.wait_for_function("() => document.querySelectorAll('[class*=\"st-key-rv_sel_\"]').length === 100")
        ids = page.evaluate(JS_IDS)
        # large tiles, nothing cut off
        width = page.locator('[data-testid="stMain"] [data-testid="stImage"] img').first.bounding_box()["width"]
        assert width >= 120
        assert page.evaluate(JS_CUT) == []
        shot(page, "review-queue")
        page.get_by_role("heading", name="Review").click()        # focus on the page, not on a field
        act_until(page, lambda: page.keyboard.press("a"),          # a: tick all (again: still all)
                  lambda ms: page.wait_for_function(f"() => ({JS_TICKED})() === 100", timeout=ms))
        page.keyboard.press("x")
        page.wait_for_function(f"() => ({JS_TICKED})() === 0")
        # tick two images (the focus stays on the last tick box) and press k
        for i in ids[:2]:
            page.locator(f".st-key-rv_sel_{i} label").first.click()
        page.wait_for_function(f"() => ({JS_TICKED})() === 2")
        wait_app_idle(page)   # the tick's rerun has redrawn the page (and its key listener)
        page.keyboard.press("k")
        _overrides_shown(page, 2)
        assert rs.get(ids[0]) == ("keep", None) and rs.get(ids[1]) == ("keep", None)
        # r rejects (Streamlit's own R would only rerun the app)
        page.locator(f".st-key-rv_sel_{ids[2]} label").first.click()
        page.wait_for_function(f"() => ({JS_TICKED})() === 1")
        wait_app_idle(page)   # the tick's rerun has redrawn the page (and its key listener)
        page.keyboard.press("r")
        _overrides_shown(page, 3)
        assert rs.get(ids[2]) == ("reject", None)
        # 3 relabels as fear
        page.locator(f".st-key-rv_sel_{ids[3]} label").first.click()
        page.wait_for_function(f"() => ({JS_TICKED})() === 1")
        wait_app_idle(page)   # the tick's rerun has redrawn the page (and its key listener)
        page.keyboard.press("3")
        _overrides_shown(page, 4)
        assert rs.get(ids[3]) == ("relabel", "fear")
        # u undoes the last action
        page.keyboard.press("u")
        _overrides_shown(page, 3)
        assert rs.get(ids[3]) is None
        # → and ← turn pages
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => document.querySelector('.st-key-rv_page input').value === '2'")
        page_two = _tiles_replaced(page, ids)     # a whole new page of tiles, none of page 1's
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("() => document.querySelector('.st-key-rv_page input').value === '1'")
        # a full page rejected by keyboard: a dialog names the count first; nothing is applied until confirmed
        ids2 = _tiles_replaced(page, page_two, 100)
        assert not set(ids2) & set(ids[:3])                       # decided images left the "to review" queue
        page.get_by_role("heading", name="Review").click()
        act_until(page, lambda: page.keyboard.press("a"),          # a: tick all (again: still all)
                  lambda ms: page.wait_for_function(f"() => ({JS_TICKED})() === 100", timeout=ms))
        page.keyboard.press("r")
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("100 images").first.wait_for(timeout=60_000)
        shot(page, "review-bulk-confirm")
        assert rs.count() == 3
        dialog.get_by_role("button", name="Reject 100 images").click()
        _overrides_shown(page, 103)
        assert dialog.count() == 0 or not dialog.is_visible()
    assert all(rs.get(i) == ("reject", None) for i in ids2) and rs.count() == 103


def test_label_issues_by_keyboard_and_only_the_open_tab_takes_keys(tmp_path, fer_sample):
    from fer_core.train import labels

    planted_copies(tmp_path, fer_sample, "lib", copies=20)
    labels.compute("lib", labels.LabelsConfig(folds=3, epochs=1, sources=("cnn",)))
    rs = review.store_for(datasets.load("lib"))
    with streamlit_server() as url, browser_page(1500, 1200) as page:
        page.goto(f"{url}/Review")
        page.get_by_text("images match").first.wait_for(timeout=120_000)
        wait_app_idle(page)
        ids = page.evaluate(JS_IDS)
        # the Queue tab is open: k keeps its ticked image, not the first label issue
        page.locator(f".st-key-rv_sel_{ids[0]} label").first.click()
        page.wait_for_function(f"() => ({JS_TICKED})() === 1")
        wait_app_idle(page)   # the tick's rerun has redrawn the page (and its key listener)
        page.keyboard.press("k")
        _overrides_shown(page, 1)
        assert rs.get(ids[0]) == ("keep", None)
        page.get_by_role("tab", name="Label issues").click()
        first = page.locator('[class*="st-key-li_keep_"]').first
        first.wait_for(timeout=60_000)
        iid = next(c for c in first.get_attribute("class").split()
                   if c.startswith("st-key-li_keep_")).removeprefix("st-key-li_keep_")
        page.get_by_role("heading", name="Review").click()
        page.keyboard.press("3")
        _overrides_shown(page, 2)
        assert rs.get(iid) == ("relabel", "fear")
        shot(page, "review-label-issues-keys")
