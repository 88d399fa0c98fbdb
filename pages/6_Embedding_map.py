"""Embedding map: every face as a point (UMAP or PCA of its SFace embedding), coloured by label or by a
signal; lasso or box-select a region to see those images and keep / reject them in bulk."""

from __future__ import annotations

import numpy as np
import streamlit as st

from fer_core import datasets, embedmap, estimates, jobs
from fer_core.signals.base import COLUMN_META
from ui import quality_view as qv
from ui.common import job_manager, live_jobs, page_done, raw_figure
from ui.curation import (LABEL_ORDER, clickable_montage, current_decisions, current_recipe, face_signals_panel,
                         curation_page, inspector, recipe_sidebar, summary_sidebar)
from ui.jobs_panel import estimate_caption
from ui.review_tools import bulk_confirmation, bulk_override

name, inputs = curation_page("Embedding map", "🗺️")
if not face_signals_panel(name, need="embeddings"):
    st.stop()
sig = inputs.signals
rec = current_recipe(name, inputs)
recipe_sidebar(name, inputs)
dec = current_decisions(name, inputs)
summary_sidebar(inputs, dec)

c = st.columns([1, 1.4, 1.6])
method = c[0].radio("Map", ["umap", "pca"], horizontal=True, key="emap_method", persist_state="session",
                    format_func=str.upper)
numeric = [k for k in ("face_score", "class_outlier", "knn_disagree", "sharpness", "brightness", "contrast")
           if k in sig]
color_by = c[1].selectbox("Colour by", ["label", "decision"] + numeric, key="emap_color", persist_state="session",
                          format_func=lambda k: COLUMN_META[k].title if k in COLUMN_META else k)
splits = c[2].multiselect("Splits", ["train", "val", "test"], default=["train", "val", "test"], key="emap_splits",
                          persist_state="session")

mp = embedmap.load_map(name, method)
if mp is None:
    if method == "pca":
        mp = embedmap.compute_map(name, "pca")
    else:
        st.info("The UMAP layout is computed once per dataset and cached.")
        estimate_caption(estimates.for_map(int(datasets.load(name).meta.get("n_images", 0))))
        if st.button("Compute the UMAP map", type="primary", key="emap_go",
                     disabled=bool(job_manager().active("map", name))):
            job_manager().submit(jobs.map_job(name, "umap"))
            st.rerun()

        live_jobs(kind=("map",), dataset=name, key=f"map-{name}")
        st.stop()

ids_all = sig["id"].to_numpy()
pos = np.searchsorted(ids_all, mp["id"].to_numpy())
show = np.isin(sig["split"].to_numpy()[pos], splits)
pos, x, y = pos[show], mp["x"].to_numpy()[show], mp["y"].to_numpy()[show]
labels = sig["label"].to_numpy()[pos]
traces = []
if color_by == "label":
    for lab in [l for l in LABEL_ORDER if l in set(labels)]:
        m = labels == lab
        traces.append({"type": "scattergl", "mode": "markers", "name": lab, "x": x[m].tolist(), "y": y[m].tolist(),
                       "customdata": ids_all[pos[m]].tolist(), "hovertext": [lab] * int(m.sum()), "hoverinfo": "text",
                       "marker": {"size": 4, "opacity": 0.65, "color": qv.LABEL_COLORS.get(lab)}})
elif color_by == "decision":
    keep = dec["keep"].to_numpy()[pos]
    rv = (dec["review"].to_numpy()[pos] != 0) & keep
    for nm, m, col in (("kept", keep & ~rv, "#2e9f43"), ("to review", rv, "#ff9f1c"), ("rejected", ~keep, "#d62728")):
        traces.append({"type": "scattergl", "mode": "markers", "name": nm, "x": x[m].tolist(), "y": y[m].tolist(),
                       "customdata": ids_all[pos[m]].tolist(), "hovertext": labels[m].tolist(), "hoverinfo": "text",
                       "marker": {"size": 4, "opacity": 0.65, "color": col}})
else:
    v = sig[color_by].to_numpy(np.float64, na_value=np.nan)[pos]
    traces.append({"type": "scattergl", "mode": "markers", "name": color_by, "x": x.tolist(), "y": y.tolist(),
                   "customdata": ids_all[pos].tolist(), "hovertext": [f"{l} · {t:.3g}" for l, t in zip(labels, v)],
                   "hoverinfo": "text",
                   "marker": {"size": 4, "opacity": 0.7, "color": np.nan_to_num(v).tolist(), "colorscale": "Viridis",
                              "showscale": True, "colorbar": {"title": {"text": COLUMN_META[color_by].title}}}})
fig = {"data": traces, "layout": {"height": 620, "dragmode": "lasso", "margin": {"l": 0, "r": 0, "t": 20, "b": 0},
                                  "xaxis": {"visible": False}, "yaxis": {"visible": False}, "legend": {"orientation": "h"},
                                  "uirevision": f"{method}-{color_by}"}}
main, side = st.columns([3, 1.15])
with main:
    ev = st.plotly_chart(raw_figure(fig), key="emap", on_select="rerun", selection_mode=("lasso", "box"),
                         width="stretch")
    try:
        pts = ev.selection.points if ev is not None else []
    except AttributeError:
        pts = []
    if pts:
        st.session_state["emap_sel"] = [p.get("customdata") for p in pts if p.get("customdata")]
    sel = st.session_state.get("emap_sel", [])
    st.caption("Lasso or box-select points (drag on the map) to see those images. Double-click the map to reset the view.")
    if sel:
        sel_sorted = sorted(set(sel))
        st.markdown(f"**{len(sel_sorted):,} images selected**" + (" (showing 120)" if len(sel_sorted) > 120 else ""))
        b = st.columns(4)
        what = "the points selected on the map"
        if b[0].button(f"Reject all {len(sel_sorted):,}", key="emap_reject"):
            bulk_override(name, "map", sel_sorted, "reject", what=what)
        if b[1].button(f"Keep all {len(sel_sorted):,}", key="emap_keep"):
            bulk_override(name, "map", sel_sorted, "keep", what=what)
        if b[2].button("Clear their overrides", key="emap_clear"):
            bulk_override(name, "map", sel_sorted, "clear", what=what)
        if b[3].button("Clear selection", key="emap_unsel"):
            st.session_state["emap_sel"] = []
            st.rerun()
        shown = sel_sorted[:120]
        sp = np.searchsorted(ids_all, shown)
        keep_d = dec["keep"].to_numpy()
        clickable_montage(name, inputs, shown, "emap_m", ["keep" if keep_d[i] else "reject" for i in sp],
                          [sig["label"].iat[i] for i in sp])
with side:
    inspector(name, inputs, dec, rec)
bulk_confirmation(name, "map")   # the question of a pending bulk change (once per run)
page_done()
