"""Real browser: looking at a signal on the Quality page never changes the recipe. Two silent changes seen only in
Chromium (AppTest keeps every widget's state): switching Sharpness → Contrast → Sharpness → Contrast turned the
Filter-on toggle off, and merely viewing Contrast rounded its cut to the slider's 4-digit grid; both were then
auto-saved as a draft with "unsaved changes" in the sidebar. Cause: a keyed widget not drawn in a run loses its
state by element id; a value the browser then sends for it counts as a change, and on_change wrote the browser's
copy (the toggle's default, the slider's rounded grid value) into the recipe. How often the browser re-sends depends
on timing, so the signals are switched both after each run settles and as fast as a person clicks along."""

from __future__ import annotations

import pytest

from browser import browser_page, shot, streamlit_server, wait_app_idle

pytestmark = pytest.mark.browser

JS_TOGGLE_ON = ("() => { const t = Array.from(document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stCheckbox\"]'))"
                ".filter(e => e.innerText.includes('Filter on')); return t.length === 1 ? "
                "t[0].querySelector('input').checked : null; }")


@pytest.mark.parametrize("settle", [True, False], ids=["settled", "quick"])
def test_viewing_signals_changes_nothing(tmp_path, fer_sample, settle):
    from conftest import import_and_scan
    from fer_core import decisions, drafts, recipe
    from fer_core.signals.base import COLUMN_META

    import_and_scan(tmp_path, fer_sample, "sub")
    model = recipe.default_recipe(decisions.load_inputs("sub").signals)
    sharp, contrast = model.filters["sharpness"], model.filters["contrast"]
    assert sharp.enabled and contrast.enabled
    cut = contrast.min if contrast.min is not None else contrast.review_min
    assert cut is not None and float(f"{cut:.4g}") != cut   # off the slider's 4-digit grid: rounding would show

    with streamlit_server() as url, browser_page(1500, 1600) as page:
        page.goto(f"{url}/Quality")
        page.get_by_text("Rejected by this filter").first.wait_for(timeout=90_000)
        wait_app_idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("saved", exact=True).wait_for(timeout=30_000)
        seen = []
        for col in ["sharpness", "contrast"] * 3:
            title = COLUMN_META[col].title
            page.get_by_role("combobox", name="Signal to tune").click()
            page.get_by_role("option", name=title, exact=True).click()
            page.locator('[data-testid="stMain"] [data-testid="stSlider"]').filter(
                has_text=title.lower()).first.wait_for(timeout=30_000)
            if settle:   # else switch on as soon as the signal's slider shows, as a person clicking along does
                wait_app_idle(page)
                page.wait_for_timeout(700)   # any rerun the widgets trigger by themselves (on_change) has started
                wait_app_idle(page)
            if settle:
                seen.append((col, page.evaluate(JS_TOGGLE_ON), sidebar.get_by_text("unsaved changes").count() > 0))
        wait_app_idle(page)
        page.wait_for_timeout(700)
        wait_app_idle(page)
        seen.append(("end", page.evaluate(JS_TOGGLE_ON), sidebar.get_by_text("unsaved changes").count() > 0))
        shot(page, f"quality-state-after-switching-{'settled' if settle else 'quick'}")
    d = drafts.read("sub")
    got = d and {c: d.recipe.filters[c] for c in ("sharpness", "contrast")}
    msg = f"toggle on / sidebar 'unsaved' after each switch: {seen}; draft: {got}; default contrast: {contrast}"
    assert all(on for _, on, _ in seen), "a Filter-on toggle switched itself off: " + msg
    assert not any(u for *_, u in seen), "viewing signals made the recipe 'unsaved': " + msg
    assert d is None, "viewing signals auto-saved a draft: " + msg
