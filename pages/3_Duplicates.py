"""Duplicates & leakage: duplicate groups (largest first) with the copy the recipe keeps, and the
train↔val/test leakage panel with the pairs side by side."""

from __future__ import annotations


import numpy as np
import pandas as pd
import streamlit as st

from fer_core import recipe as recipe_mod, store
from ui.common import page_done
from ui.curation import (change_recipe, tuning_run, clickable_montage, current_decisions, current_recipe, dirty, curation_page, inspector,
                         recipe_sidebar, summary_sidebar, wkey)

name, inputs = curation_page("Duplicates & leakage", "👯")
sig = inputs.signals
recipe_sidebar(name, inputs)


def _bind(key, attr, cast):
    """The widget ``key``'s callback: a new recipe with the duplicate setting ``attr`` changed."""
    def cb():
        change_recipe(name, lambda r: r.with_duplicates(**{attr: cast(st.session_state[key])}))
    return cb


def _widget(fn, label, attr, cast, **kw):
    dup = current_recipe(name, inputs).duplicates
    key = wkey(name, "dup", attr)
    if "options" in kw:  # a recipe may hold a value between the marks (5 bits): offer it, never show another one
        kw["options"] = sorted(set(kw["options"]) | {cast(getattr(dup, attr))})
    if key not in st.session_state:
        st.session_state[key] = getattr(dup, attr)
    return fn(label, key=key, on_change=_bind(key, attr, cast), **kw)


@st.cache_data(max_entries=8, show_spinner=False)
def _default_leak_drops(name: str, stamp: str, _inputs) -> int:
    """Training copies the data-derived default recipe drops for leakage: the same for every move of this
    page's controls, so computed once per dataset and signal tables (it cost a second decide per move)."""
    dflt = recipe_mod.default_recipe(_inputs.signals)
    return int(recipe_mod.has_reason(recipe_mod.decide(_inputs.signals, dflt, None, _inputs.pairs)["reasons"], "leak").sum())


dirty_at_full_run = dirty(name)


@st.fragment
def _page():
    """Everything a control of this page changes reruns alone on a move (the recipe sidebar, the menu and the
    jobs panel are neither recomputed nor redrawn), as on the Quality page (issue 15)."""
    rec = tuning_run(name, inputs, dirty_at_full_run)
    dup = rec.duplicates
    c = st.columns([1, 1, 2, 1, 1.4])
    with c[0]:
        _widget(st.toggle, "Exact", "exact", bool, help="Same decoded pixels")
    with c[1]:
        _widget(st.toggle, "Near", "near", bool, help="Perceptual hash (and 1-px-shifted probes) within the threshold")
    with c[2]:
        _widget(st.select_slider, "Near-duplicate threshold (Hamming bits of 64)", "near_threshold", int,
                options=list(range(0, 13, 2)), disabled=not dup.near,
                help="Looked at by eye on FER2013: ≤4 bits are the same photograph; at 6 a few different faces "
                     "appear; from 8 groups chain into hundreds of different images.")
    with c[3]:
        _widget(st.toggle, "Mirrored", "mirror", bool, help="Horizontally flipped copies (≤2 bits: above that "
                "different faces mirror into each other)")
    with c[4]:
        _widget(st.selectbox, "Policy", "policy", str, options=list(recipe_mod.POLICIES),
                format_func={"keep_one": "keep one copy per group", "drop_all": "drop every copy",
                             "keep_all": "keep all copies"}.get)
    emb_ready = store.family_status(name)["embeddings"]["complete"]
    c2 = st.columns([1.6, 1, 2])
    with c2[0]:
        _widget(st.toggle, "Drop training copies of val/test images (leakage)", "drop_leaked", bool)
    with c2[1]:
        _widget(st.toggle, "Embedding copies", "embedding", bool, disabled=not emb_ready,
                help="Near copies found by SFace face embeddings (re-cropped, re-contrasted, watermarked copies "
                     "a pixel hash misses)." + ("" if emb_ready else " Compute face signals first (Embedding map page)."))
    with c2[2]:
        _widget(st.select_slider, "Embedding similarity threshold (cosine)", "embed_threshold", float,
                options=[round(x, 2) for x in np.arange(0.75, 1.001, 0.01)], disabled=not (emb_ready and dup.embedding),
                help="Looked at by eye on FER2013: pairs from ~0.78 up are the same photograph (re-cropped, "
                     "re-contrasted); below, different people and non-faces start to pair up. Default 0.80.")

    dec = current_decisions(name, inputs)
    summary_sidebar(inputs, dec)

    default_leak_drops = _default_leak_drops(name, f"{sig.attrs.get('catalog_hash')}|{sig.attrs.get('signal_stamp')}", inputs)

    split = sig["split"].to_numpy()
    group = dec["group"].to_numpy()
    keep = dec["keep"].to_numpy()
    in_groups = group >= 0
    n_groups = len(np.unique(group[in_groups]))
    m = st.columns([0.8, 0.8, 0.9, 1.35, 1.45])   # wide enough for every label (nothing cut off)
    m[0].metric("Duplicate groups", f"{n_groups:,}")
    m[1].metric("Images in groups", f"{int(in_groups.sum()):,}")
    m[2].metric("Extra copies dropped", f"{int(recipe_mod.has_reason(dec['reasons'], 'duplicate').sum()):,}")
    m[3].metric("Val/test images with a copy in train",
                f"{int(dec['eval_leaked'].sum()):,}", help="Leakage: evaluation images whose copy is in training")
    m[4].metric("Training copies the default recipe removes",
                f"{default_leak_drops:,}")

    main, side = st.columns([3, 1.15])
    ids = sig["id"].to_numpy()
    labels = sig["label"].to_numpy()
    rep = dec["representative"].to_numpy()
    pairs = inputs.pairs
    copies, cls = recipe_mod.copy_pairs(len(sig), pairs, dup)   # the pairs that make two images copies
    by_threshold = recipe_mod.accepted_pairs(pairs, dup)        # ... of which these within the recipe's thresholds
    METHOD = recipe_mod.METHOD_CODE


    def links_among(classes: np.ndarray) -> dict:
        """(class, class) → (method, distance, similarity, pixel correlation, within the thresholds) of the closest
        copy pair between two classes of pixel-identical images, for the given classes only (this page's images)."""
        m = copies & np.isin(cls[pairs.ia], classes) & np.isin(cls[pairs.ib], classes)
        out = {}
        for u, v, me, d, s_, c, ok in zip(cls[pairs.ia[m]], cls[pairs.ib[m]], pairs.method[m], pairs.distance[m],
                                          pairs.similarity[m], pairs.pixel_corr[m], by_threshold[m]):
            k, cand = (min(u, v), max(u, v)), (int(me), int(d), float(s_), float(c), bool(ok))
            if k not in out or _closeness(cand) < _closeness(out[k]):
                out[k] = cand
        return out


    def _closeness(link: tuple) -> tuple:
        me, d, s_, c, ok = link
        return ((0, 0.0) if me == METHOD["exact"] else (3, -c) if not ok else (2, -s_) if me == METHOD["embedding"]
                else (1, float(d)))


    def link_of(links: dict, i: int, j: int) -> tuple:
        """The pair that makes image i a copy of image j (method, distance, similarity, pixel corr., within thresholds)."""
        if cls[i] == cls[j]:
            return METHOD["exact"], 0, 1.0, 1.0, True
        return links.get((min(cls[i], cls[j]), max(cls[i], cls[j])), (-1, 0, 0.0, np.nan, False))


    def link_text(links: dict, i: int, j: int, short: bool = False) -> str:
        """How image i is a copy of image j: "exact", "4 bits" (pHash), "2 bits mirrored", "cos 0.86", or for a
        pair beyond the threshold linked through other copies, "pixels 0.72" (confirmed on the pixels)."""
        me, d, s_, c, ok = link_of(links, i, j)
        name = recipe_mod.METHOD_NAME.get(me)
        if name == "exact":
            return "exact" if short else "exact copy (same pixels)"
        if not ok:
            return (f"pixels {c:.2f}" if short else
                    f"{d} bits apart, confirmed on the pixels (fine-detail correlation {c:.2f} ≥ "
                    f"{pairs.pixel_same():.2f}, this dataset's threshold)")
        if name == "embedding":
            return f"cos {s_:.2f}" if short else f"cosine {s_:.2f} (face embedding)"
        if name in ("phash", "shift", "mirror") and short:
            return {"phash": f"{d} bits", "shift": f"{d}b shifted", "mirror": f"{d}b mirror"}[name]
        if name in ("phash", "shift", "mirror"):
            how = {"phash": "", "shift": " (after a 1-px shift)", "mirror": " (mirrored)"}[name]
            return f"{d} bit{'s' if d != 1 else ''}{how}"
        return "?"


    with main:
        tab_leak, tab_groups, tab_id = st.tabs(["Leakage (val/test ↔ train)", "Duplicate groups",
                                                "Same person across splits"], key="dup_tab", on_change="rerun")
        with tab_leak:
            if tab_leak.open:   # lazy tabs: only the one shown is computed and sent
                ev = np.flatnonzero(dec["eval_leaked"].to_numpy())
                st.caption(f"{len(ev):,} val/test images have a copy in the training split "
                           f"(test {int((split[ev] == 'test').sum()):,}, val {int((split[ev] == 'val').sum()):,}). Each row: the "
                           "evaluation image (blue border, never changed), then its training copies (red: dropped from "
                           "training by the recipe) with their distance to it: pHash bits of 64, *exact* for the same pixels, "
                           "*cos* for face-embedding similarity, *pixels* for a copy beyond the threshold, linked through "
                           "other copies and confirmed on the pixels. Only direct copies count, never a copy of a copy. "
                           "Labels that disagree with the evaluation image are marked *")
                only_conflict = st.toggle("Only pairs whose labels disagree", key="leak_conflict", persist_state="session")  # kept while another tab is open
                # a training copy is a copy of the evaluation image itself (or of its pixel-identical twin), never a
                # copy of a copy
                a_, b_ = cls[pairs.ia[copies]], cls[pairs.ib[copies]]
                ev_cls = np.unique(cls[ev])
                nb = pd.DataFrame({"c": np.concatenate([a_, b_, ev_cls]), "o": np.concatenate([b_, a_, ev_cls])})
                nb = nb[nb["c"].isin(ev_cls)].drop_duplicates()
                train_pos = np.flatnonzero(split == "train")
                nb = nb.merge(pd.DataFrame({"o": cls[train_pos], "j": train_pos}), on="o")
                nb = nb.sort_values(["c", "j"]).drop_duplicates(["c", "j"])   # one split, not a group-by per class
                cs_, js_ = nb["c"].to_numpy(), nb["j"].to_numpy()
                starts = np.flatnonzero(np.r_[True, cs_[1:] != cs_[:-1]]) if len(cs_) else np.zeros(0, np.int64)
                copies_of = dict(zip(cs_[starts].tolist(), np.split(js_, starts[1:])))
                rows = []
                for i in ev:
                    tr = copies_of.get(cls[i], np.zeros(0, np.int64))
                    conflict = any(labels[t] != labels[i] for t in tr)
                    if only_conflict and not conflict:
                        continue
                    rows.append((i, tr, conflict))
                per_page = 12
                pages = max(1, -(-len(rows) // per_page))
                page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="leak_page", persist_state="session") if pages > 1 else 1
                show = rows[(page - 1) * per_page: page * per_page]
                lk = links_among(np.unique(np.concatenate([cls[[i for i, _, _ in show]]] + [cls[t] for _, t, _ in show])))\
                    if show else {}
                tiles, borders, caps, hover = [], [], [], []
                width = 6
                for i, tr, conflict in show:
                    row = [i] + list(tr[:width - 1])
                    for k, j in enumerate(row):
                        tiles.append(ids[j])
                        borders.append("override" if k == 0 else ("reject" if not keep[j] else "keep"))
                        mark = "*" if k > 0 and labels[j] != labels[i] else ""
                        if k == 0:
                            caps.append(f"{split[j].upper()}\n{labels[j]}")
                            hover.append(f"{split[j]} · {labels[j]} · the evaluation image")
                        else:
                            caps.append(f"{link_text(lk, j, i, True)}\ntr {labels[j]}{mark}")
                            hover.append(f"train · {labels[j]}{mark} · {link_text(lk, j, i)} from the {split[i]} image · "
                                         + ("kept" if keep[j] else "dropped"))
                    pad = width - len(row)
                    tiles += [None] * pad
                    borders += [None] * pad
                    caps += [""] * pad
                    hover += [""] * pad
                clickable_montage(name, inputs, tiles, "leak_m", borders, caps, ncols=width, tile=80, hover=hover)
        with tab_groups:
            if tab_groups.open:   # lazy tabs: only the one shown is computed and sent
                if n_groups == 0:
                    st.info("No duplicate groups with these settings.")
                else:
                    sizes = pd.Series(group[in_groups]).value_counts()
                    order = sizes.index.to_numpy()  # largest first
                    st.caption(f"{n_groups:,} groups, largest first (sizes: "
                               + ", ".join(f"{s}×{n}" for s, n in sizes.value_counts().sort_index(ascending=False).head(8).items())
                               + "). Every two images of a group are copies of each other: the same pixels, within the "
                               "threshold of each other, or linked through other copies *and* confirmed on the pixels "
                               f"(fine-detail correlation ≥ {pairs.pixel_same():.2f}, derived from this dataset) — "
                               "never joined through a third image alone (at 6 bits a chain A–B–C links different "
                               "people). Each box is one group: the copy the policy keeps first (green, KEPT), then the "
                               "others with their distance to it; red: dropped; blue: val/test copy (never changed).")
                    per_page = 10
                    pages = max(1, -(-len(order) // per_page))
                    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="grp_page", persist_state="session") if pages > 1 else 1
                    width = 10
                    shown = order[(page - 1) * per_page: page * per_page]
                    mem_all = {g: np.flatnonzero(group == g) for g in shown}
                    lk = links_among(np.unique(cls[np.concatenate(list(mem_all.values()))]))
                    picks = []
                    for n_g, g in enumerate(shown, start=(page - 1) * per_page + 1):
                        mem = mem_all[g]
                        r = mem[rep[mem]][0]
                        others = sorted((j for j in mem if j != r), key=lambda j: (_closeness(link_of(lk, j, r)), j))
                        row = [r] + others
                        kept_word = "KEPT" if keep[r] else "best copy"
                        with st.container(border=True):
                            st.markdown(f"**Group {n_g:,}** · {len(mem)} images · {kept_word.lower()}: **{split[r]} "
                                        f"{labels[r]}**" + (f" (showing {width})" if len(mem) > width else ""))
                            st.caption("Distance to the kept copy: " + " · ".join(
                                f"{split[j]} {labels[j]} {link_text(lk, j, r, True)}" for j in others[:width - 1])
                                + (f" · and {len(others) - width + 1} more" if len(others) > width - 1 else ""))
                            tiles, borders, caps, hover = [], [], [], []
                            for k, j in enumerate(row[:width]):
                                tiles.append(ids[j])
                                borders.append("override" if split[j] != "train" and not dec["in_scope"].iat[j]
                                               else ("keep" if keep[j] else "reject"))
                                d = kept_word if k == 0 else link_text(lk, j, r, True)
                                caps.append(f"{d}\n{split[j][:2]} {labels[j]}")
                                hover.append(f"{split[j]} · {labels[j]} · " + ("the copy the policy keeps" if k == 0 else
                                             f"{link_text(lk, j, r)} from the kept copy") + f" · {sig['path'].iat[j]}")
                                picks.append((ids[j], f"group {n_g} · {split[j]} {labels[j]} · {d}"))
                            clickable_montage(name, inputs, tiles, f"grp_{ids[r]}", borders, caps, ncols=len(tiles), tile=80,
                                              hover=hover, picker=False)
                    choice = st.selectbox("Inspect", [None] + list(range(len(picks))), key="grp_pick",
                                          label_visibility="collapsed", format_func=lambda c: (
                                              "Inspect an image of these groups…" if c is None else picks[c][1]))
                    if choice is None:   # cleared (or the tab was reopened): the same pick works again
                        st.session_state.pop("_grp_pick_last", None)
                    elif st.session_state.get("_grp_pick_last") != (page, choice):
                        st.session_state["_grp_pick_last"] = (page, choice)
                        st.session_state["inspect"] = picks[choice][0]
        with tab_id:
            if tab_id.open:   # lazy tabs: only the one shown is computed and sent
                if not emb_ready:
                    st.info("Needs the face embeddings (compute face signals on the Embedding map page).")
                else:
                    from fer_core import datasets as _ds
                    from fer_core.signals.embeddings import cross_split_pairs
                    idp = cross_split_pairs(store.load_derived(_ds.load(name), "embeddings", "identity"), ids, split)
                    in_dup = set(ids[group >= 0])
                    idp = idp[~(idp["a"].isin(in_dup) & idp["b"].isin(in_dup))].sort_values("similarity", ascending=False)
                    st.caption(f"{len(idp):,} train ↔ val/test pairs whose aligned face embeddings are similar (cosine ≥ 0.45; "
                               "SFace's same-person threshold is 0.36) but that are not copies of each other: possibly the same "
                               "person in another photo (identity leakage). Confirm by eye; mark training copies to drop by hand.")
                    per_page = 12
                    pages = max(1, -(-len(idp) // per_page))
                    page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="id_page", persist_state="session") if pages > 1 else 1
                    tiles, caps = [], []
                    for a, b, s_ in idp.iloc[(page - 1) * per_page: page * per_page][["a", "b", "similarity"]].itertuples(index=False):
                        pa, pb = np.searchsorted(ids, a), np.searchsorted(ids, b)
                        tiles += [a, b]
                        caps += [f"{split[pa][:2]} {labels[pa][:4]}", f"{split[pb][:2]} {s_:.2f}"]
                    clickable_montage(name, inputs, tiles, "id_m", ["override"] * len(tiles), caps, ncols=6, tile=72)

    with side:
        inspector(name, inputs, dec, rec)
    page_done()


def _links() -> None:
    """Other imported datasets holding the same faces (FER+ and FER2013): the link's state, and a button to make
    or rebuild it as a background job. Through a link the crowd's votes reach this dataset's images."""
    from fer_core import datasets as ds_mod, jobs, links
    from ui.common import job_manager, live_jobs

    with st.expander("Other datasets holding the same faces (links)", expanded=False):
        have = {x["other"]: x for x in links.linked(name)}
        for other, x in have.items():
            if x["state"] == "ok":
                st.markdown(f"**{other}**: {x['pairs']:,} pixel-verified pairs; {x['a_linked']:,} of {x['a_images']:,} "
                            f"{x['a']} images and {x['b_linked']:,} of {x['b_images']:,} {x['b']} images have a partner "
                            f"(mean difference ≤ {x.get('max_mean', links.MAX_MEAN):g} grey levels; made {x['created']}).")
            else:
                st.warning(f"**{other}**: the link is stale — {x['why']}. It is not used until it is rebuilt.")
        others = [d for d in ds_mod.list_datasets() if d != name]
        if not others:
            st.caption("No other dataset is imported. Import FER+ (Datasets page) to link its crowd votes to FER2013.")
            return
        c = st.columns([2, 1])
        other = c[0].selectbox("Link with", others, key=wkey(name, "link_other"))
        busy = bool(job_manager().active("link"))
        if c[1].button("Rebuild link" if other in have else "Link", key=wkey(name, "link_go"), disabled=busy,
                       help="Pairs found by content (nearest thumbnails), each verified on the pixels; a copy stored "
                            "twice is linked to every copy. About 30 s for FER2013 × FER+ on 2 cores."):
            job_manager().submit(jobs.link_job(name, other))
            st.rerun()
        live_jobs(kind=("link",), key=f"link-{name}")


_page()
_links()
