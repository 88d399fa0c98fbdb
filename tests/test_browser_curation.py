"""Real browser on the full FER2013 (downloaded from the fake Kaggle server): tune a threshold, override an
image, reload, export and download the zip."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from browser import browser_page, shot, streamlit_server, wait_app_idle

pytestmark = pytest.mark.browser

JS_PLOTS = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot')).map(p => ({
  ann: (p.layout.annotations || []).map(a => a.text),
  img: (p.layout.images || []).map(i => i.source.length + ':' + i.source.slice(-40)),
  shapes: (p.layout.shapes || []).length}))"""


def _metric(page, label):
    m = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return m.locator('[data-testid="stMetricValue"]').inner_text()


def test_tune_override_reload_export(fer2013_workspace, tmp_path):
    with streamlit_server({"FER_CACHE_DIR": str(fer2013_workspace)}) as url, browser_page(1500, 1900) as page:
        page.goto(f"{url}/Quality")
        page.get_by_text("Rejected by this filter").first.wait_for(timeout=90_000)
        wait_app_idle(page)
        page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 4")
        before = page.evaluate(JS_PLOTS)
        rej_before = _metric(page, "Rejected by this filter")
        assert before[0]["ann"] and before[0]["ann"][0].startswith("min ")
        shot(page, "quality-before")
        thumb = page.locator('[data-testid="stMain"] [data-testid="stSlider"] input[type="range"]').first
        thumb.focus()
        for _ in range(25):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "([label, old]) => { const m = Array.from(document.querySelectorAll('[data-testid=\"stMetric\"]'))"
            ".find(e => e.innerText.includes(label)); return m && !m.innerText.includes(old); }",
            arg=["Rejected by this filter", rej_before], timeout=60_000)
        wait_app_idle(page)
        page.wait_for_timeout(500)
        after = page.evaluate(JS_PLOTS)
        rej_after = _metric(page, "Rejected by this filter")
        assert int(rej_after.replace(",", "")) > int(rej_before.replace(",", ""))
        assert after[0]["ann"] != before[0]["ann"], "the threshold line did not move"
        assert after[1]["img"] != before[1]["img"], "the rejected montage did not update"
        shot(page, "quality-after-slider")

        # click the first tile of the "kept, nearest the cut" montage, then reject it in the inspector
        kept = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').nth(2)
        box = kept.bounding_box()
        page.mouse.click(box["x"] + 30, box["y"] + 30)
        page.get_by_text("KEPT", exact=True).first.wait_for(timeout=30_000)
        path = page.locator('[data-testid="stMain"] [data-testid="stImageCaption"]').first.inner_text()
        page.get_by_role("button", name="Reject", exact=True).click()
        page.get_by_text("REJECTED", exact=True).first.wait_for(timeout=30_000)
        wait_app_idle(page)
        shot(page, "quality-override")

        page.reload()
        page.goto(f"{url}/Review")
        page.get_by_role("tab", name="Overrides (1)").click()  # the reject survived the reload (SQLite)
        page.get_by_role("tabpanel").locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
        shot(page, "review-overrides")

        page.goto(f"{url}/Export")
        page.get_by_role("button", name="Export", exact=True).click()
        page.get_by_text("finished").first.wait_for(timeout=240_000)
        wait_app_idle(page)
        btn = page.get_by_role("button", name="Download fer2013-clean.zip")
        btn.wait_for(timeout=60_000)
        shot(page, "export-done")
        with page.expect_download(timeout=120_000) as dl:
            btn.click()
        data = open(dl.value.path(), "rb").read()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        m = json.loads(z.read("fer2013-clean/manifest.json"))
        names = z.namelist()
    assert m["overrides"]["count"] == 1 and m["overrides"]["rejects_applied"] == 1
    assert m["counts"]["after_total"] == sum(1 for n in names if n.endswith(".jpg"))
    assert not any(n.endswith(path.split("/")[-1]) for n in names if "/train/" in n), "the rejected image was exported"
    assert sum(m["counts"]["after"]["test"].values()) == 3589
