"""Review: a paginated queue of flagged images per label and per reason to confirm or reverse, and the
list of every manual override (with undo). Overrides are written to SQLite at each click."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fer_core import datasets, recipe as recipe_mod, review
from fer_core.montage import load_gray_or_color, thumbnail_uri
from ui.common import page_done
from fer_core.sources.labels import BASIC7
from ui.curation import (LABEL_ORDER, current_decisions, current_recipe, curation_page, recipe_sidebar, review_store,
                         summary_sidebar, undo_override)
from ui.review_tools import bulk_confirmation, bulk_override, shortcuts

name, inputs = curation_page("Review", "🧐")
sig = inputs.signals
rec = current_recipe(name, inputs)
recipe_sidebar(name, inputs)
dec = current_decisions(name, inputs)
summary_sidebar(inputs, dec)
rs = review_store(name)
ds = datasets.load(name)

# Lazy tabs: only the tab shown is computed and sent (the three together cost ~1.6 s of browser time on a new tab).
# Stable labels: a label that changed with a count ("Overrides (3)") sent the person back to the first tab.
n_ov = rs.count()
st.caption(f"**{n_ov:,} manual override{'s' if n_ov != 1 else ''}** so far (every click is saved at once; the "
           "Overrides tab lists them, latest first, with undo).")
tab_q, tab_l, tab_o = st.tabs(["Queue", "Label issues", "Overrides"], key="rv_tab", on_change="rerun")

with tab_l:
    if tab_l.open:   # lazy tabs: only the one shown is computed and sent
        from ui.labels_view import label_issues_tab

        label_issues_tab(name, inputs, dec, rec, rs)

with tab_q:
    if tab_q.open:   # lazy tabs: only the one shown is computed and sent
        flags = dec["flags"].to_numpy() | dec["review"].to_numpy()
        in_scope = dec["in_scope"].to_numpy()
        present = [r for r in recipe_mod.reason_names() if recipe_mod.has_reason(flags, r).any()]
        QUEUES = {"label_margin": "Label issues (label margin)", "label_quality": "Label issues (label quality)", "face_score": "Not a face (face score)", "class_outlier": "Outlier in its class",
                  "knn_disagree": "Neighbours carry other labels", "conflict": "Conflicting labels (copies disagree)",
                  "crowd": "Crowd votes: no single expression"}
        c = st.columns([1.3, 1, 1.3, 1])
        reason = c[0].selectbox("Queue / reason", ["any"] + [r for r in QUEUES if r in present]
                                + [r for r in present if r not in QUEUES], key="rv_reason", persist_state="session",
                                format_func=lambda r: "any reason" if r == "any" else QUEUES.get(r, r))
        label = c[1].selectbox("Label", ["any"] + [l for l in LABEL_ORDER if l in set(sig["label"])], key="rv_label",
                               persist_state="session")
        status = c[2].selectbox("Show", ["to review", "rejected", "kept by hand", "all flagged"], key="rv_status",
                                persist_state="session",
                                help="to review: flagged images in scope without a manual decision yet")
        queue = in_scope & (flags != 0) if reason == "any" else in_scope & recipe_mod.has_reason(flags, reason)
        mask = review.queue_mask(dec, sig["label"].to_numpy(), queue, label, status)
        ov = dec["override"].to_numpy()
        idx = np.flatnonzero(mask)
        per_page = 100
        pages = max(1, -(-len(idx) // per_page))
        if st.session_state.get("rv_page", 1) > pages:
            st.session_state["rv_page"] = pages
        page = c[3].number_input(f"Page (of {pages})", 1, pages, key="rv_page", persist_state="session")
        show = idx[(page - 1) * per_page: page * per_page]
        ids = sig["id"].to_numpy()
        sel_keys = [f"rv_sel_{ids[i]}" for i in show]
        selected = [ids[i] for i in show if st.session_state.get(f"rv_sel_{ids[i]}")]
        labs = [l for l in LABEL_ORDER if l in BASIC7 or l in set(sig["label"])]
        st.caption(f"{len(idx):,} images match. Tick images (or press **a** for the whole page), then reject, keep or "
                   "relabel them. Every click is saved at once; Undo reverts your last action. Keys: **←/→** page · "
                   "**a** select all · **x** select none · **k** keep · **r** reject · "
                   + " · ".join(f"**{n}** {l}" for n, l in enumerate(labs, 1)) + " (relabel) · **u** undo")

        def _turn(step: int):
            st.session_state["rv_page"] = min(pages, max(1, st.session_state.get("rv_page", 1) + step))

        def _tick(value: bool):
            for k in sel_keys:
                st.session_state[k] = value

        b = st.columns([1, 1, 1, 1, 1.4])
        b[0].button("← Prev", key="rv_prev", on_click=_turn, args=(-1,), disabled=page <= 1, help="Previous page (←)",
                    width="stretch")
        b[1].button("Next →", key="rv_next", on_click=_turn, args=(1,), disabled=page >= pages, help="Next page (→)",
                    width="stretch")
        b[2].button("Select all · A", key="rv_all", on_click=_tick, args=(True,), help="Tick every image on this page",
                    width="stretch")
        b[3].button("Select none · X", key="rv_none", on_click=_tick, args=(False,), help="Untick them all",
                    width="stretch")
        if b[4].button("Undo my last action · U", key="rv_undo", width="stretch"):
            undone = undo_override(name)
            if undone or "_override_error" not in st.session_state:   # a failed undo is shown as its error instead
                st.session_state["_rv_msg"] = f"Undid the last action ({len(undone)} image(s))." if undone else "Nothing to undo."
            st.rerun()
        n_sel = len(selected)

        def _apply(action: str, label: str | None = None):   # asks first from BULK_CONFIRM_AT images on
            bulk_override(name, "review", selected, action, label=label, what="ticked on this page", clear_keys=sel_keys)

        b = st.columns([1.4, 1.4, 1.4, 1.2])
        if b[0].button(f"Reject selected ({n_sel}) · R", type="primary", disabled=not selected, key="rv_reject",
                       width="stretch"):
            _apply("reject")
        if b[1].button(f"Keep selected ({n_sel}) · K", disabled=not selected, key="rv_keep", width="stretch"):
            _apply("keep")
        if b[2].button(f"Clear their overrides ({n_sel})", disabled=not selected, key="rv_clear", width="stretch"):
            _apply("clear")
        rl = st.columns([1.6] + [1] * len(labs))
        rl[0].markdown(f"Relabel selected ({n_sel}) as:")
        for n, lab in enumerate(labs, 1):
            if rl[n].button(f"{n} {lab}", key=f"rv_to_{lab}", disabled=not selected, width="stretch"):
                _apply("relabel", lab)
        shortcuts({"ArrowLeft": "rv_prev", "ArrowRight": "rv_next", "a": "rv_all", "x": "rv_none", "r": "rv_reject",
                   "k": "rv_keep", "u": "rv_undo"} | {str(n): f"rv_to_{lab}" for n, lab in enumerate(labs, 1)})
        if msg := st.session_state.pop("_rv_msg", None):
            st.info(msg)
        reasons_txt = recipe_mod.reasons_text(flags[show], ", ")
        ncol = 6
        final = dec["label_final"].to_numpy()
        for r0 in range(0, len(show), ncol):
            cols = st.columns(ncol)
            for k, i in enumerate(show[r0:r0 + ncol]):
                with cols[k]:
                    img = load_gray_or_color(ds.image_path(sig["path"].iat[i]))
                    state = "✅ kept" if dec["keep"].iat[i] else "❌ rejected"
                    hand = {"keep": " by hand", "reject": " by hand",
                            "relabel": f" · relabelled → {final[i]}"}.get(ov[i], "")
                    st.image(img, width=128)
                    st.checkbox(f"**{sig['label'].iat[i]}**", key=f"rv_sel_{ids[i]}", help=sig["path"].iat[i],
                                persist_state="session")   # ticks survive a look at another tab
                    crowd_txt = ""
                    if "crowd_votes" in sig and sig["crowd_votes"].iat[i] > 0:
                        crowd_txt = (f" · crowd {sig['crowd_label'].iat[i]} {sig['crowd_share'].iat[i]:.0%}"
                                     + (f", suggested {sig['suggested_label'].iat[i]}" if "suggested_label" in sig
                                        and pd.notna(sig["suggested_label"].iat[i]) else ""))
                    st.caption(f"{state}{hand} · {reasons_txt[r0 + k]}{crowd_txt}")

with tab_o:
    if tab_o.open:   # lazy tabs: only the one shown is computed and sent
        o = rs.overrides()
        if o.empty:
            st.info("No manual overrides yet. Mark images on the Quality, Duplicates or Review pages.")
        else:
            meta = sig.set_index("id")[["path", "split", "label"]]
            o = o.rename(columns={"label": "new_label"}).join(meta, on="image_id")
            o = o.sort_values(["ts", "image_id"], ascending=[False, True], kind="stable")   # latest first
            o["time"] = pd.to_datetime(o["ts"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
            o["applied"] = o["split"].isin(rec.scope)
            per = 100
            opages = max(1, -(-len(o) // per))
            st.caption("Overrides always win over the recipe within its scope; those on images outside the scope "
                       f"(e.g. the test split) are kept but not applied. Latest first, {per} per page.")
            op = st.number_input(f"Page (of {opages})", 1, opages, key="ov_page") if opages > 1 else 1
            o = o.iloc[(op - 1) * per: op * per].copy()
            o["image"] = [thumbnail_uri(ds.image_path(p_)) if isinstance(p_, str) else None for p_ in o["path"]]
            view = o[["image", "time", "action", "label", "new_label", "path", "split", "applied", "image_id"]]
            view.columns = ["image", "time", "action", "label", "new label", "path", "split", "applied", "image id"]
            ev = st.dataframe(view, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                              key="ov_table", row_height=52,
                              column_config={"image": st.column_config.ImageColumn("image", width="small",
                                                                                   help="The image (48×48)")})
            rows = ev.selection.rows if ev is not None else []
            c1, c2 = st.columns(2)
            if c1.button(f"Clear selected overrides ({len(rows)})", disabled=not rows, key="ov_clear"):
                bulk_override(name, "review", view["image id"].iloc[rows].tolist(), "clear", what="selected in the table")
            if c2.button("Undo my last action", key="ov_undo"):
                undo_override(name)
                st.rerun()
            with st.expander("History (latest first)"):
                st.dataframe(rs.history(200), hide_index=True, width="stretch")

bulk_confirmation(name, "review")   # the question of a pending bulk change (once per run)
page_done()
