"""The "Label issues" review queue: per class, the images most likely mislabelled first, each large enough
to judge, with its given and suggested label, the model's top-3 probabilities and its nearest neighbours;
one click accepts the relabel, drops the image, or keeps it as it is (all stored as overrides)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fer_core import crowd, datasets, review, store
from fer_core.montage import load_gray_or_color
from fer_core.recipe.vocab import LABEL_CUTS
from fer_core.signals.base import COLUMN_META
from fer_core.sources.labels import BASIC7
from ui.curation import LABEL_ORDER, set_override, undo_override
from ui.review_tools import shortcuts


@st.cache_resource(max_entries=2, show_spinner=False)
def _unit_vectors(name: str, stamp: str):
    from fer_core import embedmap

    return embedmap.unit_vectors(name)


def _neighbours(name: str, image_ids: list[str], k: int) -> dict[str, pd.DataFrame]:
    """k nearest faces of each image, one matrix product for the whole page."""
    from fer_core import embedmap

    stamp = str(store.family_status(name)["embeddings"].get("finished"))
    return embedmap.nearest(*_unit_vectors(name, stamp), image_ids, k)


def crowd_check(sig: pd.DataFrame, col: str = "label_rank") -> None:
    """Where crowd votes exist (FER+, or a link to it): how well the ranking by ``col`` (the recipe's label cut)
    finds the crowd's disagreements."""
    if sig.attrs.get("labels_are_votes"):   # FER+ itself: its labels are the majority, nothing to check against
        return
    p = crowd.label_issue_precision(sig, by=col)
    if p is None:
        return

    def _fmt(d):
        return " · ".join(f"top {k:,}: {'–' if v is None else f'{v:.0%}'}" for k, v in d["precision"].items())

    by = COLUMN_META[col].title.lower() if col in COLUMN_META else "label-issue rank"
    st.markdown(f"**Checked against the crowd** ({p['images']:,} training images with ten FER+ votes): of the "
                f"images ranked most suspect by {by}, the share where the given label got **0 of 10 votes** — {_fmt(p['zero_votes'])} "
                f"(all images: {p['zero_votes']['base_rate']:.0%}); where it is **not the crowd's majority** — "
                f"{_fmt(p['not_majority'])} (all images: {p['not_majority']['base_rate']:.0%}).")
    both = {k: (v, p["given_right"]["precision"][k]) for k, v in p.get("suggestion_right", {}).get("precision", {}).items()
            if v is not None}
    if both:                         # (not with fewer ranked images than the smallest top k)
        better = [k for k, (v, g) in both.items() if v > g]
        st.markdown(f"**Relabel or drop?** Among the same top images the model's suggested label is the crowd's "
                    f"majority — {_fmt(p['suggestion_right'])}; the given label — {_fmt(p['given_right'])}. "
                    + (f"Relabelling to the suggestion brings labels nearer the crowd's up to the top {max(better):,}; "
                       "beyond, dropping does." if better else
                       "The suggestion is no more often right than the given label here: drop, do not relabel."))


def label_issues_tab(name: str, inputs, dec: pd.DataFrame, rec, rs) -> None:
    sig = inputs.signals
    col = rec.label_cut(sig.columns)      # the label signal the recipe cuts on (or ranks review by)
    if col is None:
        st.info("No label signals yet. They come from K-fold training: start **Find label issues** on the "
                "Train page, or run `python -m fer_core labels " + name + "`.")
        return
    meta = store.family_status(name)["labels"]
    ds = datasets.load(name)
    q = sig[col].to_numpy(np.float64, na_value=np.nan)
    title = COLUMN_META[col].title
    f = rec.filters.get(col)
    cut = f.min if f is not None and f.enabled else None
    rcut = f.review_min if f is not None and f.enabled else None
    st.caption(f"Out-of-fold label check of {int(np.isfinite(q).sum()):,} training images "
               f"(finished {meta.get('finished') or '?'}). Recipe cut: {title.lower()} < "
               f"{cut if cut is None else f'{cut:.3f}'} is {'relabelled' if rec.labels.policy == 'relabel' else 'dropped'}"
               f"; < {rcut if rcut is None else f'{rcut:.3f}'} goes to review. Change the cut and the policy on the "
               f"Quality page (signal *{title}*) or in the recipe file.")
    crowd_check(sig, col)
    c = st.columns([1.2, 1.2, 1, 1])
    labs = [l for l in LABEL_ORDER if l in set(sig["label"])]
    label = c[0].selectbox("Given label", ["any"] + labs, key="li_label", persist_state="session")
    show_mode = c[1].selectbox("Show", ["undecided", "decided by hand", "all"], key="li_mode", persist_state="session")
    # no review cut in the recipe: the share its data-derived default would send to review
    limit = rcut if rcut is not None else np.nanpercentile(q, COLUMN_META[col].review_q)
    mask = review.queue_mask(dec, sig["label"].to_numpy(), np.isfinite(q) & (q < limit), label, show_mode)
    ov = dec["override"].to_numpy()
    idx = np.flatnonzero(mask)
    idx = idx[np.lexsort((sig["label_rank"].to_numpy()[idx], q[idx]))]   # lowest score first; ties by label_rank
    per_page = 20
    pages = max(1, -(-len(idx) // per_page))
    if st.session_state.get("li_page", 1) > pages:
        st.session_state["li_page"] = pages
    page = c[2].number_input(f"Page (of {pages})", 1, pages, key="li_page", persist_state="session")
    if c[3].button("Undo my last action · U", key="li_undo"):
        undo_override(name)
        st.rerun()
    show = idx[(page - 1) * per_page: page * per_page]
    labs = [l for l in LABEL_ORDER if l in BASIC7 or l in set(sig["label"])]

    def _turn(step: int):
        st.session_state["li_page"] = min(pages, max(1, st.session_state.get("li_page", 1) + step))

    n1, n2, cap = st.columns([1, 1, 8])
    n1.button("← Prev", key="li_prev", on_click=_turn, args=(-1,), disabled=page <= 1, help="Previous page (←)")
    n2.button("Next →", key="li_next", on_click=_turn, args=(1,), disabled=page >= pages, help="Next page (→)")
    cap.caption(f"{len(idx):,} images below the review cut match, most likely mislabelled first. Keys act on the "
                "first image of the page (⌨): **s** accept the suggested label · **k** keep as is · **r** drop · "
                + " · ".join(f"**{n}** {l}" for n, l in enumerate(labs, 1)) + " (relabel) · **←/→** page · **u** undo")
    if len(show):
        first = sig["id"].iat[show[0]]
        shortcuts({"s": f"li_rel_{first}", "k": f"li_keep_{first}", "r": f"li_drop_{first}", "u": "li_undo",
                   "ArrowLeft": "li_prev", "ArrowRight": "li_next"}
                  | {str(n): f"li_to_{lab}_{first}" for n, lab in enumerate(labs, 1)})
    ids = sig["id"].to_numpy()
    has_emb = store.family_status(name)["embeddings"]["complete"]
    nbs = _neighbours(name, [ids[i] for i in show], 8) if has_emb and len(show) else {}
    for i in show:
        iid = ids[i]
        given, sugg = sig["label"].iat[i], sig["suggested_label"].iat[i]
        cols = st.columns([1, 2.8, 2])
        with cols[0]:
            st.image(load_gray_or_color(ds.image_path(sig["path"].iat[i])), width=144,
                     caption="⌨ the keys act on this image" if i == show[0] else None)
        with cols[1]:
            state = "kept" if dec["keep"].iat[i] else "dropped"
            final = dec["label_final"].iat[i]
            hand = {"keep": "kept as is by hand", "reject": "dropped by hand", "relabel": f"relabelled by hand → {final}"}.get(ov[i], "")
            votes = crowd.votes_text(sig.iloc[i]) if "crowd_votes" in sig else ""
            st.markdown(f"**given:** {given} → **suggested:** {sugg}  \n"
                        + " · ".join(f"{COLUMN_META[c].title.lower()} {sig[c].iat[i]:.3f}"
                                     for c in LABEL_CUTS if c in sig) + "  \n"
                        f"top-3: {sig['label_top3'].iat[i]}  \n"
                        + (f"{votes}  \n" if votes else "") +
                        f"now: **{state}**{' as ' + final if state == 'kept' and final != given else ''}"
                        f"{' · ' + hand if hand else ''}")
            b = st.columns([1.6, 0.8, 1.1])
            keys = bool(i == show[0])               # the keys act on the first image: its buttons name them
            if b[0].button(f"Relabel → {sugg}" + " · S" * keys, key=f"li_rel_{iid}", disabled=sugg == given,
                           type="primary"):
                set_override(name, [iid], "relabel", label=sugg)
                st.rerun()
            if b[1].button("Drop" + " · R" * keys, key=f"li_drop_{iid}"):
                set_override(name, [iid], "reject")
                st.rerun()
            if b[2].button("Keep as is" + " · K" * keys, key=f"li_keep_{iid}"):
                set_override(name, [iid], "keep")
                st.rerun()
        with cols[2]:
            if iid in nbs:
                nb = nbs[iid]
                npos = np.searchsorted(ids, nb["id"].to_numpy())
                imgs = [load_gray_or_color(ds.image_path(sig["path"].iat[j])) for j in npos]
                st.image(imgs, width=72, caption=[f"{sig['label'].iat[j]} {s:.2f}" for j, s in
                                                  zip(npos, nb["similarity"])])
                st.caption("nearest faces (embedding): label · similarity")
            else:
                st.caption("Neighbours need the face embeddings (Embedding map page).")
        to = st.columns([1.2] + [1] * len(labs))
        to[0].caption("or relabel as")
        for n, lab in enumerate(labs, 1):
            if to[n].button(f"{n} {lab}", key=f"li_to_{lab}_{iid}", disabled=lab == given, width="stretch"):
                set_override(name, [iid], "relabel", label=lab)
                st.rerun()
        st.divider()
