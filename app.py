"""FER Curation Studio — home page. Pages live in pages/ (file-based multipage; no st.navigation)."""

from __future__ import annotations

import streamlit as st

from fer_core import datasets
from ui.common import page_done, setup_page

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
    st.info("Start on the **Datasets** page: download FER2013 from Kaggle or import it from disk.")
else:
    st.subheader("Imported datasets")
    for n in names:
        ds = datasets.load(n)
        st.markdown(f"- **{n}** — {ds.meta.get('n_images', 0):,} images "
                    f"({ds.meta.get('n_rejected', 0):,} rejected at import), {ds.meta.get('title', '')}")
cols = st.columns(7)
for col, (page, label, icon) in zip(cols, [("pages/1_Datasets.py", "Datasets", "📥"), ("pages/2_Quality.py", "Quality", "🔍"),
                                          ("pages/3_Duplicates.py", "Duplicates & leakage", "👯"),
                                          ("pages/4_Review.py", "Review", "🧐"), ("pages/5_Export.py", "Export", "📦"),
                                          ("pages/6_Embedding_map.py", "Embedding map", "🗺️"),
                                          ("pages/7_Train.py", "Train", "🏋️")]):
    col.page_link(page, label=label, icon=icon)

page_done()
