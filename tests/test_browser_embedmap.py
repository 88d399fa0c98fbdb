"""Real browser: lasso a region of the embedding map and see the selected images as a montage."""

from __future__ import annotations

import pytest

from browser import browser_page, shot, streamlit_server, wait_app_idle
from fer_core import embedmap

pytestmark = pytest.mark.browser


def test_lasso_on_embedding_map_shows_montage(faces_ws):
    ws, _ = faces_ws
    embedmap.compute_map("faces", "pca")
    with streamlit_server({"FER_CACHE_DIR": str(ws)}) as url, browser_page(1400, 1500) as page:
        page.goto(f"{url}/Embedding_map")
        page.get_by_text("PCA", exact=True).click()
        wait_app_idle(page)
        page.wait_for_function("() => { const p = document.querySelector('[data-testid=\"stMain\"] .js-plotly-plot');"
                               " return p && p.data && p.data.length > 0; }", timeout=60_000)
        page.wait_for_timeout(1000)
        chart = page.locator('[data-testid="stMain"] [data-testid="stPlotlyChart"]').first
        bb = chart.bounding_box()
        cx, cy = bb["x"] + bb["width"] * 0.5, bb["y"] + bb["height"] * 0.5
        r = min(bb["width"], bb["height"]) * 0.35
        page.mouse.move(cx - r, cy - r)
        page.mouse.down()
        for dx, dy in [(0, -r), (r, -r), (r, 0), (r, r), (0, r), (-r, r), (-r, 0), (-r, -r)]:
            page.mouse.move(cx + dx, cy + dy, steps=6)
        page.mouse.up()
        page.get_by_text("images selected").first.wait_for(timeout=60_000)
        wait_app_idle(page)
        n = int(page.get_by_text("images selected").first.inner_text().split()[0].replace(",", ""))
        assert n > 5
        montage = page.locator('[data-testid="stMain"] .fer-view[data-kind="montage"] img').first
        montage.wait_for(timeout=30_000)
        assert len(montage.get_attribute("data-ids").split()) == min(n, 120)   # every selected image (up to 120)
        assert page.get_by_role("button", name=f"Reject all {n:,}").is_visible()
        shot(page, "embedding-map-lasso")
