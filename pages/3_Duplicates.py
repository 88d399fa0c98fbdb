"""Duplicates & leakage: duplicate groups (largest first) with the copy the recipe keeps, and the
train↔val/test leakage panel with the pairs side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fer_core import recipe as recipe_mod, store
from ui.common import no_dataset_yet, page_done, setup_page
from ui.curation import (clickable_montage, current_decisions, current_recipe, inputs_or_scan, inspector,
                         recipe_sidebar, summary_sidebar, wkey)

name = setup_page("Duplicates & leakage", "👯")
st.title("👯 Duplicates & leakage")
if not name:
    no_dataset_yet()
inputs = inputs_or_scan(name)
if inputs is None:
    st.stop()
sig = inputs.signals
rec = current_recipe(name, inputs)
recipe_sidebar(name, inputs)
dup = rec.duplicates


def _bind(key, attr, cast):
    def cb():
        setattr(dup, attr, cast(st.session_state[key]))
    return cb


def _widget(fn, label, attr, cast, **kw):
    key = wkey(name, "dup", attr)
    if "options" in kw:  # a recipe may hold a value between the marks (5 bits): offer it, never show another one
        kw["options"] = sorted(set(kw["options"]) | {cast(getattr(dup, attr))})
    if key not in st.session_state:
        st.session_state[key] = getattr(dup, attr)
    return fn(label, key=key, on_change=_bind(key, attr, cast), **kw)


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
default = recipe_mod.default_recipe(sig)
dec_default = recipe_mod.decide(sig, default, None, inputs.pairs)

split = sig["split"].to_numpy()
group = dec["group"].to_numpy()
keep = dec["keep"].to_numpy()
in_groups = group >= 0
n_groups = len(np.unique(group[in_groups]))
leak_train = recipe_mod.has_reason(dec["flags"], "leak")
m = st.columns(5)
m[0].metric("Duplicate groups", f"{n_groups:,}")
m[1].metric("Images in groups", f"{int(in_groups.sum()):,}")
m[2].metric("Extra copies dropped", f"{int(recipe_mod.has_reason(dec['reasons'], 'duplicate').sum()):,}")
m[3].metric("Val/test images with a copy in train",
            f"{int(dec['eval_leaked'].sum()):,}", help="Leakage: evaluation images whose copy is in training")
m[4].metric("Training copies the default recipe removes",
            f"{int(recipe_mod.has_reason(dec_default['reasons'], 'leak').sum()):,}")

main, side = st.columns([3, 1.15])
ids = sig["id"].to_numpy()
labels = sig["label"].to_numpy()
with main:
    tab_leak, tab_groups, tab_id = st.tabs(["Leakage (val/test ↔ train)", "Duplicate groups",
                                            "Same person across splits"])
    with tab_leak:
        ev = np.flatnonzero(dec["eval_leaked"].to_numpy())
        st.caption(f"{len(ev):,} val/test images have a copy in the training split "
                   f"(test {int((split[ev] == 'test').sum()):,}, val {int((split[ev] == 'val').sum()):,}). Each row: the "
                   "evaluation image (blue border, never changed), then its training copies (red: dropped from "
                   "training by the recipe). Labels that disagree with the evaluation image are marked *")
        only_conflict = st.toggle("Only pairs whose labels disagree", key="leak_conflict")
        rows = []
        for i in ev:
            tr = np.flatnonzero((group == group[i]) & (split == "train"))
            conflict = any(labels[t] != labels[i] for t in tr)
            if only_conflict and not conflict:
                continue
            rows.append((i, tr, conflict))
        per_page = 12
        pages = max(1, -(-len(rows) // per_page))
        page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="leak_page") if pages > 1 else 1
        show = rows[(page - 1) * per_page: page * per_page]
        tiles, borders, caps = [], [], []
        width = 6
        for i, tr, conflict in show:
            row = [i] + list(tr[:width - 1])
            for k, j in enumerate(row):
                tiles.append(ids[j])
                borders.append("override" if k == 0 else ("reject" if not keep[j] else "keep"))
                mark = "*" if k > 0 and labels[j] != labels[i] else ""
                caps.append(f"{split[j][:2]} {labels[j][:4]}{mark}")
            tiles += [None] * (width - len(row))
            borders += [None] * (width - len(row))
            caps += [""] * (width - len(row))
        clickable_montage(name, inputs, tiles, "leak_m", borders, caps, ncols=width, tile=72)
    with tab_groups:
        if n_groups == 0:
            st.info("No duplicate groups with these settings.")
        else:
            sizes = pd.Series(group[in_groups]).value_counts()
            order = sizes.index.to_numpy()  # largest first
            st.caption(f"{n_groups:,} groups, largest first (sizes: "
                       + ", ".join(f"{s}×{n}" for s, n in sizes.value_counts().sort_index(ascending=False).head(8).items())
                       + "). Green: the copy kept; red: dropped; blue: val/test copy (never changed).")
            per_page = 15
            pages = max(1, -(-len(order) // per_page))
            page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="grp_page") if pages > 1 else 1
            width = 12
            tiles, borders, caps = [], [], []
            for g in order[(page - 1) * per_page: page * per_page]:
                mem = np.flatnonzero(group == g)
                mem = mem[np.lexsort((mem, ~dec["representative"].to_numpy()[mem]))][:width]
                for j in mem:
                    tiles.append(ids[j])
                    borders.append("override" if split[j] != "train" and not dec["in_scope"].iat[j]
                                   else ("keep" if keep[j] else "reject"))
                    caps.append(f"{split[j][:2]} {labels[j][:4]}")
                pad = width - len(mem)
                tiles += [None] * pad
                borders += [None] * pad
                caps += [""] * pad
            clickable_montage(name, inputs, tiles, "grp_m", borders, caps, ncols=width, tile=64)
    with tab_id:
        if not emb_ready:
            st.info("Needs the face embeddings (compute face signals on the Embedding map page).")
        else:
            from fer_core import datasets as _ds
            idp = store.load_derived(_ds.load(name), "embeddings", "identity")
            in_dup = set(ids[group >= 0])
            idp = idp[~(idp["a"].isin(in_dup) & idp["b"].isin(in_dup))].sort_values("similarity", ascending=False)
            st.caption(f"{len(idp):,} train ↔ val/test pairs whose aligned face embeddings are similar (cosine ≥ 0.45; "
                       "SFace's same-person threshold is 0.36) but that are not copies of each other: possibly the same "
                       "person in another photo (identity leakage). Confirm by eye; mark training copies to drop by hand.")
            per_page = 12
            pages = max(1, -(-len(idp) // per_page))
            page = st.number_input(f"Page (of {pages})", 1, pages, 1, key="id_page") if pages > 1 else 1
            tiles, caps = [], []
            for a, b, s_ in idp.iloc[(page - 1) * per_page: page * per_page][["a", "b", "similarity"]].itertuples(index=False):
                pa, pb = np.searchsorted(ids, a), np.searchsorted(ids, b)
                tiles += [a, b]
                caps += [f"{split[pa][:2]} {labels[pa][:4]}", f"{split[pb][:2]} {s_:.2f}"]
            clickable_montage(name, inputs, tiles, "id_m", ["override"] * len(tiles), caps, ncols=6, tile=72)

with side:
    inspector(name, inputs, dec, rec)

page_done()
