"""Review: a paginated queue of flagged images per label and per reason to confirm or reverse, and the
list of every manual override (with undo). Overrides are written to SQLite at each click."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fer_core import datasets, recipe as recipe_mod
from fer_core.montage import load_gray_or_color
from ui.common import no_dataset_yet, page_done, setup_page
from ui.curation import (LABEL_ORDER, current_decisions, current_recipe, inputs_or_scan, recipe_sidebar, review_store,
                         session_author, set_override, summary_sidebar)

name = setup_page("Review", "🧐")
st.title("🧐 Review")
if not name:
    no_dataset_yet()
inputs = inputs_or_scan(name)
if inputs is None:
    st.stop()
sig = inputs.signals
rec = current_recipe(name, inputs)
recipe_sidebar(name, inputs)
dec = current_decisions(name, inputs)
summary_sidebar(inputs, dec)
rs = review_store(name)
ds = datasets.load(name)

tab_q, tab_l, tab_o = st.tabs(["Queue", "Label issues", f"Overrides ({rs.count():,})"])

with tab_l:
    from ui.labels_view import label_issues_tab

    label_issues_tab(name, inputs, dec, rec, rs)

with tab_q:
    flags = dec["flags"].to_numpy() | dec["review"].to_numpy()
    in_scope = dec["in_scope"].to_numpy()
    present = [r for r in recipe_mod.reason_names() if recipe_mod.has_reason(flags, r).any()]
    QUEUES = {"label_quality": "Label issues (label quality)", "face_score": "Not a face (face score)", "class_outlier": "Outlier in its class",
              "knn_disagree": "Neighbours carry other labels", "conflict": "Conflicting labels (copies disagree)"}
    c = st.columns([1.3, 1, 1.3, 1])
    reason = c[0].selectbox("Queue / reason", ["any"] + [r for r in QUEUES if r in present]
                            + [r for r in present if r not in QUEUES], key="rv_reason", persist_state="session",
                            format_func=lambda r: "any reason" if r == "any" else QUEUES.get(r, r))
    label = c[1].selectbox("Label", ["any"] + [l for l in LABEL_ORDER if l in set(sig["label"])], key="rv_label",
                           persist_state="session")
    status = c[2].selectbox("Show", ["to review", "rejected", "kept by hand", "all flagged"], key="rv_status",
                            persist_state="session",
                            help="to review: flagged images in scope without a manual decision yet")
    mask = in_scope & (flags != 0) if reason == "any" else in_scope & recipe_mod.has_reason(flags, reason)
    if label != "any":
        mask &= sig["label"].to_numpy() == label
    ov = dec["override"].to_numpy()
    if status == "to review":
        mask &= ov == ""
    elif status == "rejected":
        mask &= ~dec["keep"].to_numpy()
    elif status == "kept by hand":
        mask &= ov == "keep"
    idx = np.flatnonzero(mask)
    per_page = 100
    pages = max(1, -(-len(idx) // per_page))
    page = c[3].number_input(f"Page (of {pages})", 1, pages, 1, key="rv_page")
    show = idx[(page - 1) * per_page: page * per_page]
    st.caption(f"{len(idx):,} images match. Tick images, then confirm (reject) or reverse (keep). Every click is "
               "saved at once; Undo reverts your last action.")
    ids = sig["id"].to_numpy()
    b = st.columns(6)
    if b[0].button("Select all on page", key="rv_all"):
        for i in show:
            st.session_state[f"rv_sel_{ids[i]}"] = True
        st.rerun()
    if b[1].button("Select none", key="rv_none"):
        for i in show:
            st.session_state[f"rv_sel_{ids[i]}"] = False
        st.rerun()
    selected = [ids[i] for i in show if st.session_state.get(f"rv_sel_{ids[i]}")]
    if b[2].button(f"Reject selected ({len(selected)})", type="primary", disabled=not selected, key="rv_reject"):
        set_override(name, selected, "reject")
        for i in selected:
            st.session_state.pop(f"rv_sel_{i}", None)
        st.rerun()
    if b[3].button(f"Keep selected ({len(selected)})", disabled=not selected, key="rv_keep"):
        set_override(name, selected, "keep")
        for i in selected:
            st.session_state.pop(f"rv_sel_{i}", None)
        st.rerun()
    if b[4].button(f"Clear overrides ({len(selected)})", disabled=not selected, key="rv_clear"):
        set_override(name, selected, "clear")
        st.rerun()
    if b[5].button("Undo my last action", key="rv_undo"):
        undone = rs.undo(author=session_author())
        st.session_state["_rv_msg"] = f"Undid the last action ({len(undone)} image(s))." if undone else "Nothing to undo."
        st.rerun()
    if msg := st.session_state.pop("_rv_msg", None):
        st.info(msg)
    reasons_txt = recipe_mod.reasons_text(flags[show], ", ")
    ncol = 10
    for r0 in range(0, len(show), ncol):
        cols = st.columns(ncol)
        for k, i in enumerate(show[r0:r0 + ncol]):
            with cols[k]:
                img = load_gray_or_color(ds.image_path(sig["path"].iat[i]))
                state = "✅" if dec["keep"].iat[i] else "❌"
                hand = {"keep": " (by hand)", "reject": " (by hand)", "relabel": " relabelled"}.get(ov[i], "")
                st.image(img, width=80, caption=f"{state}{hand} {sig['label'].iat[i]} · {reasons_txt[r0 + k]}")
                st.checkbox("select", key=f"rv_sel_{ids[i]}", help=sig["path"].iat[i])

with tab_o:
    o = rs.overrides()
    if o.empty:
        st.info("No manual overrides yet. Mark images on the Quality, Duplicates or Review pages.")
    else:
        meta = sig.set_index("id")[["path", "split", "label"]]
        o = o.rename(columns={"label": "new_label"}).join(meta, on="image_id")
        o["time"] = pd.to_datetime(o["ts"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        o["applied"] = o["split"].isin(rec.scope)
        st.caption("Overrides always win over the recipe within its scope; those on images outside the scope "
                   "(e.g. the test split) are kept but not applied.")
        view = o[["time", "action", "label", "new_label", "path", "split", "applied", "image_id"]]
        view.columns = ["time", "action", "label", "new label", "path", "split", "applied", "image id"]
        ev = st.dataframe(view, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                          key="ov_table")
        rows = ev.selection.rows if ev is not None else []
        c1, c2 = st.columns(2)
        if c1.button(f"Clear selected overrides ({len(rows)})", disabled=not rows, key="ov_clear"):
            set_override(name, view["image id"].iloc[rows].tolist(), "clear")
            st.rerun()
        if c2.button("Undo my last action", key="ov_undo"):
            rs.undo(author=session_author())
            st.rerun()
        with st.expander("History (latest first)"):
            st.dataframe(rs.history(200), hide_index=True, width="stretch")

page_done()
