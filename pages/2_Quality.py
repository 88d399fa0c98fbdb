"""Quality: tune each filter by eye and by numbers — histogram with the cut, counts, and the images on
both sides of the cut. Moving a slider never touches an image file's signals (decide is ~20 ms)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import streamlit as st

from fer_core import recipe as recipe_mod
from fer_core.signals.base import COLUMN_META
from ui import quality_view as qv
from ui.views import histogram_view
from ui.common import page_done
from ui.curation import (LABEL_ORDER, change_recipe, tuning_run, clickable_montage, current_decisions, current_recipe, dirty,
                         face_signals_panel, fmt_value,
                         curation_page, inspector, recipe_sidebar, summary_sidebar, wkey)

name, inputs = curation_page("Quality", "🔍")
sig = inputs.signals
rec = current_recipe(name, inputs)
recipe_sidebar(name, inputs)
if "face_score" not in sig:
    with st.expander("Face signals (not computed yet): is it a usable face? near copies, class outliers"):
        face_signals_panel(name, need="embeddings")

cols = [c for c in recipe_mod.filter_columns() if c in sig and c in rec.filters]
if "q_signal" not in st.session_state or st.session_state["q_signal"] not in cols:
    st.session_state["q_signal"] = cols[0]


def _bind(key: str, col: str, what: str):
    """The widget ``key``'s callback: a new recipe with the filter ``col`` changed (recipes are immutable)."""
    def cb():
        val = st.session_state[key]
        f = current_recipe(name, inputs).filters[col]
        if what == "enabled":
            changes = {"enabled": bool(val)}
        elif what in ("min", "max", "review_min", "review_max"):
            changes = {what: float(val)}
        elif what == "range":
            changes = {"min": float(val[0]), "max": float(val[1])}
        else:  # "reject_on": review-first signals switch the (stricter) reject cut on or off
            side = "min" if meta_of(col).direction == "low" else "max"
            changes = {side: getattr(f, "review_" + side) if val else None}
        change_recipe(name, lambda r: r.with_filter(col, **changes))
    return cb


def meta_of(c):
    return COLUMN_META[c]


scope_mask = sig["split"].isin(rec.scope).to_numpy()
top = st.columns([2, 1, 1, 1])
# a stable label per option: the browser keeps the selection by its label, so a label that changed with the
# filter's state ("… (off)") lost the selection when the filter was switched on (the page jumped to Sharpness)
col = top[0].selectbox("Signal to tune", cols, key="q_signal", persist_state="session",
                       format_func=lambda c: COLUMN_META[c].title)
meta = COLUMN_META[col]
f = rec.filters[col]
values = sig[col].to_numpy(np.float64, na_value=np.nan)
en_key = wkey(name, "en", col)
# From the recipe on every run, not once: a keyed widget left undrawn for a run (another signal shown) loses its
# state by element id, and when it is drawn again a value the browser sends for that id counts as a change, so
# on_change wrote the browser's copy, the toggle's default (off), into the recipe (switching signals turned it off)
st.session_state[en_key] = f.enabled
top[1].toggle("Filter on", key=en_key, on_change=_bind(en_key, col, "enabled"))
per_label = top[2].toggle("Per label", key="q_per_label", persist_state="session")
logx = top[3].toggle("Log scale", value=qv.use_log(col), key=f"q_log_{col}", persist_state="session",
                     help="Log value axis (skewed signals start on it); counts stay linear")

dirty_at_full_run = dirty(name)


@st.fragment
def _tune():
    """What a cut moves — the slider(s), counts, histogram, montages, the inspector and the sidebar summary —
    reruns alone on a slider move or a tile click: the rest of the page (recipe sidebar, signal picker,
    expanders above) is neither recomputed nor redrawn (issue 15: a move took 0.45–1.06 s to settle)."""
    rec = tuning_run(name, inputs, dirty_at_full_run)
    f = rec.filters[col]
    main, side = st.columns([3, 1.15])
    with main:
        st.caption(f"{meta.description} **Direction:** {'low is bad' if meta.direction == 'low' else 'high is bad' if meta.direction == 'high' else 'outside a range is bad'} · "
                   f"scope: {', '.join(rec.scope)} ({int(scope_mask.sum()):,} images). Default cut derived from this dataset: "
                   f"median ± {meta.k:g}·MAD{' on log values' if meta.transform == 'log' else ''}.")
        cuts = [float(v) for v in (f.min, f.max, f.review_min, f.review_max) if v is not None]
        # the recipe's own cuts exactly (threshold_grid rounds them to 4 digits): a slider that re-sends its
        # position when it reappears must hand back the cut unchanged, not its rounded neighbour
        grid = sorted(set(qv.threshold_grid(values[scope_mask], logx=qv.use_log(col))) | set(cuts))

        def _near(v, fallback):
            return min(grid, key=lambda g: abs(g - v)) if v is not None else fallback

        def _cut_slider(label, attr, value, disabled=False):
            # The position comes from the recipe through ``value``, never from a pre-set session_state entry:
            # select_slider decides one- vs two-sided from ``value`` alone (a (lo, hi) pair in session_state with
            # no pair in ``value`` makes a one-thumb serde that hands the callback a float; issue 15).
            key = wkey(name, attr, col)
            st.select_slider(label, grid, value=value, key=key, on_change=_bind(key, col, attr),
                             format_func=lambda v: f"{v:,.4g}", disabled=disabled or not f.enabled)

        if meta.direction == "both":
            _cut_slider(f"Keep {meta.title.lower()} between", "range", (_near(f.min, grid[0]), _near(f.max, grid[-1])))
        else:
            what = "min" if meta.direction == "low" else "max"
            word = "below" if what == "min" else "above"
            has_review = meta.review_k is not None or meta.review_only or getattr(f, "review_" + what) is not None

            def _slider(label, attr, disabled=False):
                _cut_slider(label, attr, _near(getattr(f, attr), grid[0] if what == "min" else grid[-1]), disabled)

            if has_review:
                _slider(f"Send to review {word}", "review_" + what)
                rk = wkey(name, "reject_on", col)
                st.session_state[rk] = getattr(f, what) is not None   # from the recipe every run, as "Filter on"
                st.checkbox(f"Also reject automatically {word} a stricter cut", key=rk, on_change=_bind(rk, col, "reject_on"),
                            disabled=not f.enabled)
                if getattr(f, what) is not None:
                    _slider(f"Reject {word}", what)
                st.caption("This signal is a review signal: its flagged images go to the Review page's queue; only "
                           "those past the stricter cut are rejected without a look.")
            else:
                _slider(f"Reject {meta.title.lower()} {word}", what)

    dec = current_decisions(name, inputs)
    summary_sidebar(inputs, dec)

    with main:
        flag_this = recipe_mod.has_reason(dec["reasons"], col)
        only_this = dec["reasons"].to_numpy() == recipe_mod.reason_bit(col)
        review_this = recipe_mod.has_reason(dec["review"], col) & dec["in_scope"].to_numpy()
        m = st.columns(4)
        m[0].metric("Rejected by this filter", f"{int(flag_this.sum()):,}")
        if meta.review_k is not None or meta.review_only:
            m[1].metric("Sent to review by it", f"{int(review_this.sum()):,}")
        else:
            m[1].metric("…for this reason only", f"{int(only_this.sum()):,}")
        m[2].metric("Kept overall", f"{int(dec['keep'].sum()):,}")
        m[3].metric("Share of scope rejected here", f"{100 * flag_this.sum() / max(1, scope_mask.sum()):.2f}%")
        labels = sig["label"].to_numpy()
        edges, counts = qv.hist_bins(values[scope_mask], labels[scope_mask] if per_label else None, logx)
        if per_label:
            counts = {k: counts[k] for k in LABEL_ORDER if k in counts}
        histogram_view("q_hist", **qv.histogram_data(col, edges, counts, f, logx), title=f"{meta.title} histogram")
        with st.expander("Rejected by this filter, per label", expanded=False):
            present = [l for l in LABEL_ORDER if l in set(labels[scope_mask])]
            lab_s, fl_s = labels[scope_mask], flag_this[scope_mask]
            st.dataframe(pd.DataFrame({l: {"rejected here": int((fl_s & (lab_s == l)).sum()),
                                           "kept here": int((~fl_s & (lab_s == l)).sum())} for l in present}),
                         width="stretch")
        with st.expander("All filters", expanded=False):   # in the wide column: a narrow one clipped its columns
            rows = []
            for c in cols:
                fc = rec.filters[c]
                rows.append({"signal": COLUMN_META[c].title, "on": fc.enabled,
                             "min": fmt_value(c, fc.min) if fc.min is not None else "",
                             "max": fmt_value(c, fc.max) if fc.max is not None else "",
                             "rejected": int(recipe_mod.has_reason(dec["reasons"], c).sum())})
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        rej_near, kept_near, worst = qv.montage_sets(col, values, scope_mask, f)
        ids = sig["id"].to_numpy()
        keep_all = dec["keep"].to_numpy()

        def _borders(idx):
            return ["reject" if flag_this[i] else "review" if review_this[i] else ("keep" if keep_all[i] else "none")
                    for i in idx]

        def _caps(idx):
            return [f"{values[i]:,.3g}" for i in idx]

        state_word = {"reject": "rejected by this filter", "review": "sent to review", "keep": "kept",
                      "none": "rejected for another reason"}

        def _hover(idx):   # what the border colour means, in words, on the tile's tooltip
            return [f"{labels[i]} · {values[i]:,.4g} · {state_word[b]}" for i, b in zip(idx, _borders(idx))]

        cut_word = "flagged (review or reject)" if (f.review_min is not None or f.review_max is not None) else "rejected"
        st.markdown(f"**{cut_word.capitalize()}, nearest the cut** ({len(rej_near)} shown) — red: rejected by this filter; "
                    "orange: sent to review")
        clickable_montage(name, inputs, list(ids[rej_near]), "m_rej", _borders(rej_near), _caps(rej_near),
                          hover=_hover(rej_near))
        st.markdown("**Kept, nearest the cut** — green: kept; grey: passes this filter but rejected for another reason")
        clickable_montage(name, inputs, list(ids[kept_near]), "m_kept", _borders(kept_near), _caps(kept_near),
                          hover=_hover(kept_near))
        st.markdown(f"**Worst scored** by {meta.title.lower()}")
        clickable_montage(name, inputs, list(ids[worst]), "m_worst", _borders(worst), _caps(worst),
                          hover=_hover(worst))

    with side:
        inspector(name, inputs, dec, rec)

    page_done()


_tune()
