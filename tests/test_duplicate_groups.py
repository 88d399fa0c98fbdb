"""Duplicate groups never chain different images together (issue 15 item 9, issue 18's duplicate rule).

At 6 Hamming bits A~B and B~C can hold while A and C are different people; the old rule (connected
components of the accepted pairs) put A, B and C in one group and dropped the copies of a copy as leaks. Now
every two members of a group are copies of each other (complete linkage around the kept copy): accepted by
the recipe, pixel-identical, or linked through accepted pairs *and* confirmed on the pixels.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from conftest import app_page, import_and_scan, read_member
from fer_core import datasets, decisions, recipe, store
from fer_core.recipe import METHOD_CODE, Pairs

# Found on the full FER2013 at 6 bits (each chain is a whole component there: A~B and B~C accepted, A and C
# more than 12 bits apart with no probe match), looked at by eye: CHAIN_PEOPLE holds three different people
# (a sad woman, a statue, a smiling woman); in CHAIN_LEAK A and B are one photo of a neutral face, C a test
# image of another, smiling person, so under the old rule A was dropped as a "copy" of that test image.
CHAIN_PEOPLE = ("train/sad/Training_46482890.jpg", "train/sad/Training_5811559.jpg",
                "train/happy/Training_14829359.jpg")
CHAIN_LEAK = ("train/neutral/Training_72246431.jpg", "train/neutral/Training_45305542.jpg",
              "test/happy/PrivateTest_63831732.jpg")
# real FER2013 test images with a pixel-identical copy in train (looked at by eye, tests/test_signals.py)
EXACT_LEAKS = (("test/disgust/PrivateTest_98799539.jpg", "train/disgust/Training_17705855.jpg"),
               ("test/disgust/PublicTest_1829684.jpg", "train/disgust/Training_48227146.jpg"))


# ---- the rule, on hand-made pairs ------------------------------------------------------------------------

def _pairs(rows):
    """rows: (a, b, method, distance[, pixel_corr])."""
    a, b, m, d = (np.array([r[k] for r in rows]) for k in range(4))
    corr = np.array([r[4] if len(r) > 4 else np.nan for r in rows], np.float32)
    return Pairs(a.astype(np.int64), b.astype(np.int64), d.astype(np.int16),
                 np.array([METHOD_CODE[x] for x in m], np.int8), None, corr)


def _groups(g):
    out = {}
    for i, x in enumerate(g):
        if x >= 0:
            out.setdefault(int(x), set()).add(i)
    return sorted(map(frozenset, out.values()), key=min)


def test_a_chain_is_split_an_exact_chain_is_not():
    dup = recipe.Duplicates(near_threshold=6)
    # 0~1~2 a near chain (0 and 2 far apart); 3=4=5 pixel-identical (exact is transitive); 6,7,8 a triangle
    p = _pairs([(0, 1, "phash", 5), (1, 2, "phash", 6), (3, 4, "exact", 0), (4, 5, "exact", 0),
                (6, 7, "phash", 2), (7, 8, "phash", 3), (6, 8, "shift", 4)])
    g = recipe.duplicate_groups(9, p, dup)
    assert _groups(g) == [frozenset({0, 1}), frozenset({3, 4, 5}), frozenset({6, 7, 8})]
    # the group forms around the copy that is kept first (lowest priority), whichever end of the chain it is
    g = recipe.duplicate_groups(9, p, dup, priority=np.array([5, 0, 1, 9, 9, 9, 9, 9, 9], float))
    assert frozenset({1, 2}) in _groups(g) and g[0] == -1
    # the old rule: one component
    acc = recipe.accepted_pairs(p, dup)
    comp = connected_components(coo_matrix((np.ones(int(acc.sum())), (p.ia[acc], p.ib[acc])), shape=(9, 9)))[1]
    assert comp[0] == comp[2]


def test_pixel_check_confirms_a_copy_of_a_copy_inside_a_chain_only():
    dup = recipe.Duplicates(near_threshold=4)
    same, other = recipe.PIXEL_SAME + 0.1, recipe.PIXEL_SAME - 0.2
    # 0~1~2 accepted (≤4 bits), 0-2 at 9 bits but the same photograph on the pixels: one group
    # 3~4~5 accepted, 3-5 at 9 bits and different pixels: not one group
    # 6-7 at 9 bits with the same pixels but no accepted chain between them: no group (the threshold rules)
    p = _pairs([(0, 1, "phash", 3), (1, 2, "shift", 4), (0, 2, "phash", 9, same),
                (3, 4, "phash", 3), (4, 5, "phash", 4), (3, 5, "phash", 9, other),
                (6, 7, "phash", 9, same)])
    g = recipe.duplicate_groups(8, p, dup)
    assert frozenset({0, 1, 2}) in _groups(g)
    assert len({g[3], g[5]} - {-1}) == 2 or -1 in (g[3], g[5])
    assert g[6] == g[7] == -1
    # a mirrored pair is confirmed only when the recipe counts mirrored copies
    p = _pairs([(0, 1, "phash", 3), (1, 2, "phash", 4), (0, 2, "mirror", 3, same)])
    assert recipe.duplicate_groups(3, p, dup)[2] == -1 or recipe.duplicate_groups(3, p, dup)[0] == -1
    dup = replace(dup, mirror=True)
    assert len(set(recipe.duplicate_groups(3, p, dup))) == 1


def test_pixel_threshold_is_derived_from_the_dataset():
    """Where different photographs correlate more (one lab, aligned faces: CK+), the bar rises with them."""
    dup = recipe.Duplicates(near_threshold=4)
    chain = [(0, 1, "phash", 3), (1, 2, "phash", 4), (0, 2, "phash", 9, 0.7)]
    assert recipe.duplicate_groups(3, _pairs(chain), dup).tolist() == [0, 0, 0]   # too few far pairs: the floor
    far = [(10 + k, 11 + k, "phash", 10, 0.75 + 0.05 * (k % 3 == 0)) for k in range(0, 600, 2)]
    p = _pairs(chain + far)
    assert p.pixel_same() == pytest.approx(0.8) and recipe.PIXEL_SAME < 0.7
    assert len(set(recipe.duplicate_groups(700, p, dup)[:3].tolist())) > 1


def test_leakage_is_a_copy_of_the_eval_image_itself():
    split = np.array(["test", "train", "train", "train", "val", "train"])
    # 0 (test) ~ 1 ~ 2 (train): 1 is a copy of the test image, 2 only of 1; 3 is pixel-identical to 1
    # 4 (val) = 5 (train) pixel-identical
    p = _pairs([(0, 1, "phash", 4), (1, 2, "phash", 4), (1, 3, "exact", 0), (4, 5, "exact", 0)])
    sel, cls = recipe.copy_pairs(6, p, recipe.Duplicates())
    leak, eval_leaked = recipe.cross_split_copies(split, p, sel, cls)
    assert leak.tolist() == [False, True, False, True, False, True]
    assert eval_leaked.tolist() == [True, False, False, False, True, False]


# ---- on real FER2013 images ------------------------------------------------------------------------------

@pytest.fixture
def chains(tmp_path, fer_zip, fer_sample):
    names = list(CHAIN_PEOPLE + CHAIN_LEAK) + [n for pair in EXACT_LEAKS for n in pair]
    files = {n: read_member(fer_zip, n) for n in names}
    files.update({n: b for n, b in list(fer_sample.items())[::12] if n not in files})  # ~35 unrelated faces
    import_and_scan(tmp_path, files, "chains")
    inp = decisions.load_inputs("chains")
    pos = {p: i for i, p in enumerate(inp.signals["path"])}
    return inp, pos


def _six_bits(inp):
    r = recipe.default_recipe(inp.signals)
    for c in r.filters:
        r = r.with_filter(c, enabled=False)
    r = r.with_duplicates(near_threshold=6)
    return r


def test_chains_of_real_faces_are_not_one_group_and_exact_copies_are(chains):
    inp, pos = chains
    sig, p = inp.signals, inp.pairs
    r = _six_bits(inp)
    n = len(sig)
    acc = recipe.accepted_pairs(p, r.duplicates)
    acc_set = {frozenset((a, b)) for a, b in zip(p.ia[acc], p.ib[acc])}
    sel, cls = recipe.copy_pairs(n, p, r.duplicates)
    copy_set = {frozenset((a, b)) for a, b in zip(p.ia[sel], p.ib[sel])}
    comp = connected_components(coo_matrix((np.ones(int(acc.sum())), (p.ia[acc], p.ib[acc])), shape=(n, n)))[1]
    for chain in (CHAIN_PEOPLE, CHAIN_LEAK):
        a, b, c = (pos[x] for x in chain)
        # the premise: a real chain (A~B, B~C accepted at 6 bits; A, C not copies) that the old rule merged
        assert frozenset((a, b)) in acc_set and frozenset((b, c)) in acc_set
        assert frozenset((a, c)) not in copy_set and cls[a] != cls[c]
        assert comp[a] == comp[c]
    dec = decisions.run(inp, r)
    g = dec["group"].to_numpy()
    for chain in (CHAIN_PEOPLE, CHAIN_LEAK):
        a, c = pos[chain[0]], pos[chain[2]]
        assert g[a] == -1 or g[a] != g[c], chain
    # every two members of every group are copies of each other
    for _, members in pd.Series(np.arange(n)[g >= 0]).groupby(g[g >= 0]):
        m = members.to_numpy()
        for i in range(len(m)):
            for j in range(i + 1, len(m)):
                assert cls[m[i]] == cls[m[j]] or frozenset((m[i], m[j])) in copy_set
    # the neutral face A is no longer dropped as a "copy" of the smiling test face C (it was only a copy of B)
    a = pos[CHAIN_LEAK[0]]
    assert not recipe.has_reason([dec["reasons"].iat[a]], "leak")[0] and dec["keep"].iat[a]
    # pixel-identical train/test copies: one group, the test image kept, the training copy dropped as a leak
    px = sig["pixel_hash"].to_numpy()
    for te, tr in EXACT_LEAKS:
        assert px[pos[te]] == px[pos[tr]]
        assert g[pos[te]] == g[pos[tr]] >= 0
        assert dec["keep"].iat[pos[te]] and dec["eval_leaked"].iat[pos[te]]
        assert recipe.has_reason([dec["reasons"].iat[pos[tr]]], "leak")[0] and not dec["keep"].iat[pos[tr]]


def test_pixel_check_is_stored_for_every_candidate_pair(chains):
    inp, pos = chains
    pairs = store.load_derived(datasets.load("chains"), "duplicates", "pairs")
    assert "pixel_corr" in pairs and pairs["pixel_corr"].notna().all()
    assert (pairs.loc[pairs["method"] == "exact", "pixel_corr"] == 1).all()
    ids = inp.signals["id"].to_numpy()
    key = {ids[pos[CHAIN_PEOPLE[0]]], ids[pos[CHAIN_PEOPLE[1]]]}   # a statue and a woman: hash says copy,
    row = pairs[[{a, b} == key for a, b in zip(pairs["a"], pairs["b"])]]   # the pixels say otherwise
    assert len(row) == 1 and row["pixel_corr"].item() < recipe.PIXEL_SAME


# ---- the Duplicates page shows it ------------------------------------------------------------------------


def _bordered_blocks(node, out):
    """Every bordered container under ``node`` (st.container(border=True))."""
    for child in getattr(node, "children", {}).values():
        proto, ty = getattr(child, "proto", None), getattr(child, "type", "")
        if ty in ("flex_container", "vertical") and proto is not None and getattr(proto, ty).border:
            out.append(child)
        _bordered_blocks(child, out)
    return out


def _chart_ids(block) -> list[list[str]]:
    out = []
    for el in block.get("bidi_component"):          # ui.views.montage_view
        data = json.loads(el.proto.json)
        if data["kind"] == "montage":
            out.append([t["id"] for t in data["tiles"] if t])
    return out


def test_duplicates_page_shows_separate_groups_with_distances(chains):
    inp, pos = chains
    ids = inp.signals["id"].to_numpy()
    at = app_page("pages/3_Duplicates.py")
    sl = next(s for s in at.select_slider if s.label.startswith("Near-duplicate threshold"))
    sl.set_value(6)
    at.run()
    at.session_state["dup_tab"] = "Duplicate groups"     # lazy tabs: only the open one is drawn
    at.run()
    assert not at.exception, at.exception
    dec = decisions.run(inp, at.session_state["recipe_state"]["chains"]["recipe"])   # the page's recipe
    n_groups = dec.loc[dec["group"] >= 0, "group"].nunique()
    boxes = [b for b in _bordered_blocks(at.main, []) if any(m.value.startswith("**Group ") for m in b.markdown)]
    assert len(boxes) == n_groups > 0
    shown = set()
    for box in boxes:
        charts = _chart_ids(box)
        assert len(charts) == 1                          # the members of a group in one row, one box each
        members = set(charts[0])
        assert not shown & members
        shown |= members
        # the kept copy first, marked, and every other member's distance to it
        assert dec.set_index(ids).loc[charts[0][0], "representative"]
        cap = next(c.value for c in box.caption if c.value.startswith("Distance to the kept copy"))
        assert cap.count(" · ") + 1 == len(members) - 1
        assert all(any(w in part for w in ("exact", "bits", "shifted", "mirror", "cos", "pixels"))
                   for part in cap.removeprefix("Distance to the kept copy: ").split(" · "))
        assert any("kept" in m.value for m in box.markdown)
    for chain in (CHAIN_PEOPLE, CHAIN_LEAK):
        a, c = ids[pos[chain[0]]], ids[pos[chain[2]]]
        assert not any(a in ch and c in ch for box in boxes for ch in _chart_ids(box))
    # the leakage tab names each training copy's distance to the evaluation image
    at.session_state["dup_tab"] = "Leakage (val/test ↔ train)"
    at.run()
    tab = next(t for t in at.tabs if t.label.startswith("Leakage"))
    data = json.loads(tab.get("bidi_component")[0].proto.json)
    texts = [t["title"] for t in data["tiles"] if t and t["title"].startswith("train")]
    assert texts and all("exact copy" in t or "bits" in t or "cosine" in t or "pixels" in t for t in texts)


# ---- the full FER2013 ------------------------------------------------------------------------------------

def _old_rule_leaks(n, p, dup, split):
    """Training images in a connected component of accepted pairs with a val/test image (the old rule)."""
    acc = recipe.accepted_pairs(p, dup)
    comp = connected_components(coo_matrix((np.ones(int(acc.sum())), (p.ia[acc], p.ib[acc])), shape=(n, n)))[1]
    ev = np.isin(split, ("val", "test"))
    return (split == "train") & np.isin(comp, comp[ev]) & (np.bincount(comp, minlength=n)[comp] > 1)


@pytest.mark.slow
def test_full_fer2013_groups_are_complete_and_leaks_still_found(fer2013_scanned):
    cache, _ = fer2013_scanned
    inp = decisions.load_inputs("fer2013", cache)
    sig, p = inp.signals, inp.pairs
    n, split = len(sig), sig["split"].to_numpy()
    px = sig["pixel_hash"].to_numpy()
    exact_leak = (split == "train") & np.isin(px, px[np.isin(split, ("val", "test"))])
    assert exact_leak.sum() > 500
    # the share of the old rule's leaks still found. Looked at on what is no longer dropped: at 4 bits (the
    # default, 44 images) mostly the same photograph re-cropped more than the hash and the pixel check follow
    # (the face embeddings find re-crops), a few other people; at 6 bits (102) about half are other people.
    for bits, kept_share in ((4, 0.95), (6, 0.9)):
        r = recipe.default_recipe(sig)
        r = r.with_duplicates(near_threshold=bits)
        dec = decisions.run(inp, r)
        leak = recipe.has_reason(dec["reasons"], "leak")
        # every training copy of a pixel-identical val/test image is dropped
        assert leak[exact_leak].all() and not dec["keep"].to_numpy()[exact_leak].any()
        # near copies: nearly all the old rule found (it also dropped copies of copies, some of other people)
        old = _old_rule_leaks(n, p, r.duplicates, split)
        assert leak.sum() >= kept_share * old.sum() and not (leak & ~old).any()
        # every two members of a group are copies of each other
        sel, cls = recipe.copy_pairs(n, p, r.duplicates)
        copies = set(zip(np.minimum(cls[p.ia[sel]], cls[p.ib[sel]]).tolist(),
                         np.maximum(cls[p.ia[sel]], cls[p.ib[sel]]).tolist()))
        g = dec["group"].to_numpy()
        members = pd.Series(np.flatnonzero(g >= 0)).groupby(g[g >= 0])
        for _, m in members:
            c = np.unique(cls[m.to_numpy()])
            assert all((c[i], c[j]) in copies for i in range(len(c)) for j in range(i + 1, len(c)))
