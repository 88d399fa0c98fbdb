"""FER Curation Studio — home page. Pages live in pages/ (file-based multipage; no st.navigation); the sidebar menu
is ui.common.nav_menu (it names this page "Home")."""

from __future__ import annotations

import streamlit as st

from fer_core import datasets
from ui.common import PAGES, page_done, setup_page

selected = setup_page("Home", "🙂")

st.title("🙂 FER Curation Studio")
st.markdown(
    """
Curate facial-expression-recognition datasets (FER2013 and friends) and prove whether curation helps.

1. **Datasets** — download FER2013 (or CK+, RAF-DB, FER+, AffectNet, …) from Kaggle, or import a folder,
   zip or `fer2013.csv`. Every file is checked; unreadable ones are listed with the reason.
2. **Scan** — quality signals, exact/near duplicates and train↔test leakage are computed once and cached.
3. **Curate** — tune each filter with live histograms and grids of the kept *and* rejected images at the
   cut; override any image by hand; save the recipe.
4. **Export** a cleaned dataset, then **train** and evaluate on the untouched test split.
"""
)
names = datasets.list_datasets()
if not names:
    st.info("Start on the **Datasets** page: download FER2013 from Kaggle or import it from disk.", icon="📭")
    st.page_link("pages/1_Datasets.py", label="Go to Datasets", icon="📥")
else:
    st.subheader("Imported datasets")
    for n in names:
        ds = datasets.load(n)
        st.markdown(f"- **{n}** — {ds.meta.get('n_images', 0):,} images "
                    f"({ds.meta.get('n_rejected', 0):,} rejected at import), {ds.meta.get('title', '')}")
    for col, (page, label, icon) in zip(st.columns(len(PAGES) - 1), PAGES[1:]):
        col.page_link(page, label=label, icon=icon)

page_done()
