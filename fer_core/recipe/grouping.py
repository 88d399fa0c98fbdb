"""Duplicate candidate pairs → copies, groups and cross-split leakage (verified, never by transitivity alone)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fer_core.recipe.model import Duplicates

# ---- decisions ----------------------------------------------------------------------------------

METHOD_CODE = {"exact": 0, "phash": 1, "mirror": 2, "shift": 3, "embedding": 4}
METHOD_NAME = {v: k for k, v in METHOD_CODE.items()}


@dataclass
class Pairs:
    """Duplicate candidate pairs as positions into a signal table sorted by id."""

    ia: np.ndarray
    ib: np.ndarray
    distance: np.ndarray          # Hamming bits (hash methods); 0 for embedding pairs
    method: np.ndarray            # METHOD_CODE
    similarity: np.ndarray | None = None  # cosine (embedding pairs); 1 for hash pairs
    pixel_corr: np.ndarray | None = None  # aligned pixel correlation (hash pairs; NaN: not checked)

    def __post_init__(self):
        if self.similarity is None:
            self.similarity = np.ones(len(self.ia), np.float32)
        if self.pixel_corr is None:
            self.pixel_corr = np.full(len(self.ia), np.nan, np.float32)

    @classmethod
    def empty(cls) -> "Pairs":
        z = np.zeros(0, np.int64)
        return cls(z, z, z.astype(np.int16), z.astype(np.int8), z.astype(np.float32), z.astype(np.float32))

    def pixel_same(self) -> float:
        """The pixel correlation from which a copy of a copy is confirmed, derived from this dataset: the 98th
        percentile over its candidate pairs 9 or more bits apart (nearly all different photographs), and at
        least PIXEL_SAME. FER2013: 0.60; CK+ (one lab, aligned faces: different people correlate more): 0.78."""
        if getattr(self, "_pixel_same", None) is None:
            far = (self.method == METHOD_CODE["phash"]) & (self.distance >= 9) & np.isfinite(self.pixel_corr)
            q = float(np.percentile(self.pixel_corr[far], 98)) if far.sum() >= 200 else PIXEL_SAME
            self._pixel_same = max(PIXEL_SAME, q)
        return self._pixel_same

    def subset(self, keep: np.ndarray) -> "Pairs":
        """These pairs where ``keep``; the pixel threshold stays the one derived from all of them."""
        out = Pairs(self.ia[keep], self.ib[keep], self.distance[keep], self.method[keep], self.similarity[keep],
                    self.pixel_corr[keep])
        out._pixel_same = self.pixel_same()
        return out

    @classmethod
    def from_frame(cls, pairs: pd.DataFrame | None, ids: np.ndarray) -> "Pairs":
        if pairs is None or pairs.empty:
            return cls.empty()
        if "distance" not in pairs:
            pairs = pairs.assign(distance=0)
        if "similarity" not in pairs:
            pairs = pairs.assign(similarity=1.0)
        if "pixel_corr" not in pairs:
            pairs = pairs.assign(pixel_corr=np.nan)
        pairs = pairs.assign(distance=pairs["distance"].fillna(0), similarity=pairs["similarity"].fillna(1.0))
        ia = np.searchsorted(ids, pairs["a"].to_numpy())
        ib = np.searchsorted(ids, pairs["b"].to_numpy())
        n = len(ids)
        ok = (ia < n) & (ib < n)
        ok &= (ids[np.minimum(ia, n - 1)] == pairs["a"].to_numpy()) & (ids[np.minimum(ib, n - 1)] == pairs["b"].to_numpy())
        return cls(ia[ok].astype(np.int64), ib[ok].astype(np.int64), pairs["distance"].to_numpy()[ok].astype(np.int16),
                   pairs["method"].map(METHOD_CODE).to_numpy()[ok].astype(np.int8),
                   pairs["similarity"].to_numpy()[ok].astype(np.float32),
                   pairs["pixel_corr"].to_numpy(np.float32, na_value=np.nan)[ok])


def accepted_pairs(pairs: Pairs, dup: Duplicates) -> np.ndarray:
    """Mask over ``pairs``: the candidate pairs this recipe calls copies (method switches and thresholds)."""
    sel = np.zeros(len(pairs.ia), bool)
    if dup.exact:
        sel |= pairs.method == METHOD_CODE["exact"]
    if dup.near:
        near = (pairs.distance <= dup.near_threshold) & np.isin(pairs.method, (METHOD_CODE["phash"], METHOD_CODE["shift"]))
        if dup.mirror:
            near |= (pairs.distance <= min(dup.near_threshold, dup.mirror_threshold)) & (pairs.method == METHOD_CODE["mirror"])
        sel |= near
    if dup.embedding:
        sel |= (pairs.method == METHOD_CODE["embedding"]) & (pairs.similarity >= dup.embed_threshold)
    return sel


def exact_classes(n: int, pairs: Pairs, sel: np.ndarray) -> np.ndarray:
    """Class per image: pixel-identical images (accepted exact pairs) share one. Equality is transitive, so
    chaining exact pairs is safe; class labels are 0..k-1."""
    ex = sel & (pairs.method == METHOD_CODE["exact"])
    if not ex.any():
        return np.arange(n)
    g = coo_matrix((np.ones(int(ex.sum()), np.int8), (pairs.ia[ex], pairs.ib[ex])), shape=(n, n))
    return connected_components(g, directed=False)[1]


# The least correlation of the fine detail of two thumbnails (fer_core.signals.duplicates.pixel_corr) from which a
# candidate pair that the recipe's threshold alone does not accept, but that a chain of accepted pairs links, is
# confirmed as a copy (each dataset derives its own, at least this: Pairs.pixel_same). Looked at on FER2013
# (6 bits): the pairs it confirms from 0.6 up are the same photograph re-cropped, shifted or re-contrasted;
# different photographs score a median 0.33 (95th percentile 0.52).
PIXEL_SAME = 0.6


def copy_pairs(n: int, pairs: Pairs, dup: Duplicates) -> tuple[np.ndarray, np.ndarray]:
    """(mask over ``pairs``, exact class per image): the pairs that make two images copies of each other under
    this recipe: those it accepts (:func:`accepted_pairs`), plus candidate pairs of its kinds that a chain of
    accepted pairs links and whose pixels confirm it (``pixel_corr`` ≥ ``pairs.pixel_same()``). Never a chain
    alone."""
    sel = accepted_pairs(pairs, dup)
    cls = exact_classes(n, pairs, sel)
    if dup.near:
        kinds = [METHOD_CODE["phash"], METHOD_CODE["shift"]] + ([METHOD_CODE["mirror"]] if dup.mirror else [])
        ver = ~sel & np.isin(pairs.method, kinds) & (pairs.pixel_corr >= pairs.pixel_same())
        if ver.any():
            u, v = cls[pairs.ia[sel]], cls[pairs.ib[sel]]
            comp = connected_components(coo_matrix((np.ones(len(u), np.int8), (u, v)), shape=(n, n)),
                                        directed=False)[1]
            sel = sel | (ver & (comp[cls[pairs.ia]] == comp[cls[pairs.ib]]))
    return sel, cls


def group_pairs(pairs: Pairs, sel: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """Mask over ``pairs``: the copy pairs (``sel`` of :func:`copy_pairs`) that may hold two images in one
    duplicate group. A 64-bit hash of a 48×48 face is no proof of one photograph (on CK+, 4 bits pair the same
    person's other expressions and other people: bench/bench_ckplus_dups.py), so a hash pair that the recipe
    accepts must also be confirmed on the pixels (``pixel_corr`` ≥ ``pairs.pixel_same()``, derived per dataset).
    Pixel-identical twins, embedding pairs and pairs never checked (``pixel_corr`` NaN: no thumbnails) are kept
    as they are. Leakage stays a property of every copy pair (:func:`cross_split_copies` uses ``sel`` itself), so
    a training copy of a test image is dropped whatever the group it ends up in."""
    kinds = (METHOD_CODE["phash"], METHOD_CODE["shift"], METHOD_CODE["mirror"])
    h = sel & np.isin(pairs.method, kinds) & (cls[pairs.ia] != cls[pairs.ib])
    if not h.any():
        return sel
    return sel & ~(h & (pairs.pixel_corr < pairs.pixel_same()))    # (NaN < x is False: unchecked stays)


def cross_split_copies(split: np.ndarray, pairs: Pairs, sel: np.ndarray,
                       cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(training images with a copy in val/test, val/test images with a copy in train). A copy is a pair of
    :func:`copy_pairs` (``sel``, ``cls``), directly or through a pixel-identical twin, never a copy of a copy."""
    n = len(split)
    is_eval, is_train = np.isin(split, ("val", "test")), split == "train"
    has_eval = np.bincount(cls, is_eval, minlength=n) > 0
    has_train = np.bincount(cls, is_train, minlength=n) > 0
    u, v = cls[pairs.ia[sel]], cls[pairs.ib[sel]]
    eval_near, train_near = has_eval.copy(), has_train.copy()
    eval_near[u[has_eval[v]]] = True
    eval_near[v[has_eval[u]]] = True
    train_near[u[has_train[v]]] = True
    train_near[v[has_train[u]]] = True
    return is_train & eval_near[cls], is_eval & train_near[cls]


def duplicate_groups(n: int, pairs: Pairs, dup: Duplicates, priority: np.ndarray | None = None,
                     sel: np.ndarray | None = None, cls: np.ndarray | None = None) -> np.ndarray:
    """Group id per image (-1 = in no group): every two members of a group are copies of each other.

    Pixel-identical images form one class first (equality is transitive, so that is safe). Near pairs are not
    transitive: at 6 bits A~B and B~C link two different people A and C through B. So classes are taken in
    ``priority`` order (lowest first: the copy the policy keeps; default: position); each one not yet in a
    group leads a new one, and its free neighbours join it, best first, only if they have an accepted pair
    with every class already in it (complete linkage) — a pair of :func:`copy_pairs`: accepted by the recipe,
    or linked by accepted pairs and confirmed on the pixels. A chain A-B-C with A and C far apart (and
    different pixels) is never one group. (``sel``/``cls``: :func:`copy_pairs`, when the caller has it.)"""
    group = np.full(n, -1, np.int64)
    if sel is None or cls is None:
        sel, cls = copy_pairs(n, pairs, dup)
    sel = group_pairs(pairs, sel, cls)
    if not sel.any():
        return group
    a, b = pairs.ia[sel], pairs.ib[sel]
    u, v = cls[a], cls[b]
    near = u != v
    u, v = u[near], v[near]
    involved = np.unique(np.concatenate([u, v]))             # classes with a near pair
    lead = np.arange(n)                                       # the leading class of each class's group
    if len(involved):
        m = len(involved)
        imgs = np.unique(np.concatenate([a, b]))
        pri = imgs.astype(np.float64) if priority is None else np.asarray(priority, np.float64)[imgs]
        cpri = np.full(n, np.inf)
        np.minimum.at(cpri, cls[imgs], pri)                   # a class ranks as its best member
        ui, vi = np.searchsorted(involved, u), np.searchsorted(involved, v)
        adj = coo_matrix((np.ones(2 * len(ui), np.int8), (np.concatenate([ui, vi]), np.concatenate([vi, ui]))),
                         shape=(m, m)).tocsr()
        adj.sum_duplicates()
        ncomp, comp = connected_components(adj, directed=False)
        order = np.lexsort((np.arange(m), cpri[involved]))
        rank = np.empty(m, np.int64)
        rank[order] = np.arange(m)
        indptr, indices = adj.indptr, adj.indices
        size = np.bincount(comp, minlength=ncomp)
        clique = np.bincount(comp, np.diff(indptr), minlength=ncomp) == size * (size - 1)  # all pairs linked
        first = order[np.unique(comp[order], return_index=True)[1]]  # best class of each component
        assign = np.where(clique[comp], first[comp], -1)
        for k in order[~clique[comp[order]]].tolist():         # the rest: greedy, in priority order
            if assign[k] >= 0:
                continue
            assign[k] = k
            nb = indices[indptr[k]:indptr[k + 1]]
            nb = nb[assign[nb] < 0]
            joined = set()                                    # (besides k, a neighbour of each candidate)
            for c in nb[np.argsort(rank[nb])].tolist():
                if joined.issubset(indices[indptr[c]:indptr[c + 1]].tolist()):
                    assign[c] = k
                    joined.add(c)
        lead[involved] = involved[assign]
    g = lead[cls]
    ok = np.bincount(g, minlength=n)[g] > 1                   # a group of one is no group
    group[ok] = np.unique(g[ok], return_inverse=True)[1]
    return group
