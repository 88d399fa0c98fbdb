"""``decide``: a recipe applied to the signal table, as a pipeline of small pure steps.

Each step takes arrays aligned with the signal table and returns new ones (nothing is changed in place), so
each can be tested alone and the order is the whole story:

1. :func:`filter_cuts` — every enabled signal cut: reject bits and review bits;
2. :func:`cap_label_cut` — the label cut takes at most ``labels.class_cap`` of any class;
3. :func:`relabel_candidates` — under the relabel policy, label issues are kept with the suggested label;
   :func:`crowd_marks` — crowd votes, where present: relabel to the crowd majority, set unsure votes aside;
4. :func:`duplicate_marks` — copies, duplicate groups, the copy to keep, leakage, label conflicts;
5. :func:`cap_per_class` — the recipe's ``class_cap`` over every automatic cut together;
6. :func:`apply_overrides` — the person's keep / reject / relabel, within the recipe's scope;
7. the reasons that count (in scope) and ``keep``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from fer_core.recipe.grouping import Pairs, copy_pairs, cross_split_copies, duplicate_groups
from fer_core.recipe.model import Duplicates, Filter, Recipe
from fer_core.recipe.vocab import LABEL_CUTS, label_cut_bits, reason_bit, reason_names
from fer_core.recipe.report import _codes


def beyond(values: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """Values below ``lo`` or above ``hi`` (a missing bound cuts nothing; NaN is never beyond)."""
    out = np.zeros(len(values), bool)
    if lo is not None:
        out |= values < lo
    if hi is not None:
        out |= values > hi
    return out


def filter_cuts(signals: pd.DataFrame, filters: dict[str, Filter]) -> tuple[np.ndarray, np.ndarray]:
    """(reject bits, review bits) of every enabled cut on a signal the table has."""
    n = len(signals)
    names = reason_names()
    flags = np.zeros(n, np.int64)
    review = np.zeros(n, np.int64)
    for col, f in filters.items():
        if not f.enabled or col not in signals:
            continue
        v = signals[col].to_numpy(np.float64, na_value=np.nan)
        bit = 1 << names.index(col)
        for lo, hi, out in ((f.min, f.max, flags), (f.review_min, f.review_max, review)):
            if lo is not None or hi is not None:     # most filters have no review cut: no pass over the column
                out[beyond(v, lo, hi)] |= bit
    return flags, review


def cap_label_cut(signals: pd.DataFrame, class_cap: float | None, in_scope: np.ndarray, flags: np.ndarray,
                  review: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The label cut (any of ``LABEL_CUTS``) takes at most ``class_cap`` of any one class: the best-scored
    flagged images beyond it are spared (left in the review band). Scored by the label cuts that flagged images,
    in ``LABEL_CUTS`` order; ties broken by position (= id order), so decisions are deterministic.
    Returns new (flags, review, spared)."""
    n = len(signals)
    flags, review = flags.copy(), review.copy()
    spared = np.zeros(n, bool)
    bits = label_cut_bits()
    if class_cap is None or not bits:
        return flags, review, spared
    fl = np.flatnonzero(((flags & bits) != 0) & in_scope)
    # scored by the label cuts that flagged anything, in LABEL_CUTS order
    keys = [c for c in LABEL_CUTS if c in signals and (flags[fl] & reason_bit(c)).any()]
    if len(fl) and keys:
        cats, codes = _codes(signals, "label")               # cached on the frame: slider moves reuse it
        codes = codes + 1                                     # a missing label (-1) is a class of its own
        allow = np.floor(class_cap * np.bincount(codes[in_scope], minlength=len(cats) + 1) + 1e-9).astype(np.int64)
        scores = [signals[c].to_numpy(np.float64, na_value=-np.inf)[fl] for c in keys]
        s_idx = fl[np.lexsort((fl, *scores[::-1], codes[fl]))]   # by class, then score(s), then position
        sc = codes[s_idx]
        rank = np.arange(len(s_idx)) - np.searchsorted(sc, sc, side="left")
        spare = s_idx[rank >= allow[sc]]
        review[spare] |= flags[spare] & bits
        flags[spare] &= ~bits
        spared[spare] = True
    return flags, review, spared


def relabel_candidates(signals: pd.DataFrame, policy: str, flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Under the relabel policy, label issues (flagged by any label cut) whose suggested label differs are kept
    (their label bits cleared) and marked for relabelling. Returns new (flags, auto_relabel)."""
    flags = flags.copy()
    auto = np.zeros(len(signals), bool)
    bits = label_cut_bits()
    if policy == "relabel" and bits and "suggested_label" in signals:
        auto = ((flags & bits) != 0) & (signals["suggested_label"].to_numpy(dtype=object)
                                        != signals["label"].to_numpy(dtype=object))
        auto &= pd.notna(signals["suggested_label"]).to_numpy()
        flags[auto] &= ~bits
    return flags, auto


_NOT_AN_EXPRESSION = ("tie", "unknown", "not_face")


def crowd_marks(signals: pd.DataFrame, crowd: str, unsure: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the crowd votes (the votes signals, when present) do under the recipe: ``unsure`` "drop" flags
    (reason "crowd") every voted image whose votes give no single expression, or one the dataset's labels do
    not include (FER+'s contempt in FER2013); ``crowd`` "relabel" gives every other voted image whose given
    label differs the crowd majority. Returns (reason bits, relabel mask, crowd label)."""
    n = len(signals)
    bits = np.zeros(n, np.int64)
    relabel = np.zeros(n, bool)
    if "crowd_label" not in signals or (crowd == "off" and unsure == "keep"):
        return bits, relabel, np.full(n, None, dtype=object)
    cl = signals["crowd_label"].fillna("").to_numpy(dtype=object)
    given = signals["label"].to_numpy(dtype=object)
    voted = cl != ""
    known = np.isin(cl, pd.unique(given[pd.notna(given)]))
    usable = voted & known & ~np.isin(cl, _NOT_AN_EXPRESSION)
    if unsure == "drop":
        bits[voted & ~usable] = reason_bit("crowd")
    if crowd == "relabel":
        relabel = usable & (cl != given)
    return bits, relabel, cl


class DuplicateMarks(NamedTuple):
    reject: np.ndarray        # reason bits to add (duplicate / leak)
    review: np.ndarray        # review bits to add (conflicting labels within a group)
    group: np.ndarray         # duplicate group, -1 for none
    representative: np.ndarray
    leak: np.ndarray          # a training image that is a copy of a val/test image
    eval_leaked: np.ndarray   # a val/test image with a copy in training


def duplicate_marks(signals: pd.DataFrame, pairs: Pairs, dup: Duplicates,
                    split: np.ndarray | None = None) -> DuplicateMarks:
    """Copies (verified pairs), duplicate groups with the copy the policy keeps, cross-split leakage and groups
    whose copies carry different labels. Leakage is a property of pairs (a copy of a val/test image), not of
    whatever group the image ends up in. ``split``: the split column as an array, when the caller has it."""
    n = len(signals)
    split = signals["split"].to_numpy() if split is None else split
    reject = np.zeros(n, np.int64)
    review = np.zeros(n, np.int64)
    sel, cls = copy_pairs(n, pairs, dup)
    leak, eval_leaked = cross_split_copies(split, pairs, sel, cls)
    cand = np.unique(np.concatenate([pairs.ia[sel], pairs.ib[sel]]))
    priority = np.full(n, np.inf)                # the copy to keep first: preferred split, not itself a leak,
    if len(cand):                                # sharpest, then position
        rank = {s: i for i, s in enumerate(dup.prefer)}
        srank = np.array([rank.get(s, len(rank)) for s in split[cand]])
        sharp = (signals["sharpness"].to_numpy(np.float64, na_value=0.0)[cand] if "sharpness" in signals
                 else np.zeros(len(cand)))
        priority[cand[np.lexsort((cand, -sharp, leak[cand], srank))]] = np.arange(len(cand))
    group = duplicate_groups(n, pairs, dup, priority, sel, cls)
    rep = np.zeros(n, bool)
    members = np.flatnonzero(group >= 0)
    if len(members):
        m_sorted = members[np.lexsort((priority[members], group[members]))]  # best copy first within each group
        g_sorted = group[m_sorted]
        first = np.ones(len(m_sorted), bool)
        first[1:] = g_sorted[1:] != g_sorted[:-1]
        rep[m_sorted[first]] = True
        if dup.policy == "keep_one":
            extra = (group >= 0) & ~rep
        elif dup.policy == "drop_all":
            extra = group >= 0
        else:
            extra = np.zeros(n, bool)
        reject[extra & ~leak] |= reason_bit("duplicate")
        if dup.drop_leaked:
            reject[leak] |= reason_bit("leak")
        elif dup.policy != "keep_all":
            reject[leak & extra] |= reason_bit("duplicate")
        # copies that carry different labels: a review queue (relabel or drop)
        labs = signals["label"].to_numpy()
        g_lab = pd.DataFrame({"g": group[members], "l": labs[members]})
        n_lab = g_lab.groupby("g")["l"].nunique()
        conflict_groups = n_lab.index[n_lab.to_numpy() > 1].to_numpy()
        review[(group >= 0) & np.isin(group, conflict_groups)] |= reason_bit("conflict")
    return DuplicateMarks(reject, review, group, rep, leak, eval_leaked)


def apply_overrides(signals: pd.DataFrame, overrides: pd.DataFrame | None, in_scope: np.ndarray,
                    auto_relabel: np.ndarray, ids: np.ndarray | None = None,
                    relabel_to: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The person's overrides: recorded for every image, applied within the recipe's scope; a relabel sets the
    final label, a keep/reject reverses an automatic relabel. ``relabel_to``: the automatic relabels' targets
    (default: the suggested label). Returns (override, label_final, auto_relabel)."""
    n = len(signals)
    ids = signals["id"].to_numpy() if ids is None else ids
    override = np.full(n, "", dtype=object)
    label_final = signals["label"].to_numpy(dtype=object).copy()
    auto_relabel = auto_relabel & in_scope
    if auto_relabel.any():
        target = signals["suggested_label"].to_numpy(dtype=object) if relabel_to is None else relabel_to
        label_final[auto_relabel] = target[auto_relabel]
    if overrides is not None and len(overrides):
        oid = overrides["image_id"].to_numpy()
        pos = np.searchsorted(ids, oid)
        okp = pos < n
        okp &= ids[np.minimum(pos, n - 1)] == oid
        ov = overrides[okp]
        pos = pos[okp]
        override[pos] = ov["action"].to_numpy()
        relabel = (ov["action"].to_numpy() == "relabel") & in_scope[pos]
        label_final[pos[relabel]] = ov["label"].to_numpy()[relabel]
        reverse = (ov["action"].to_numpy() != "relabel") & auto_relabel[pos]  # a person's keep/reject wins
        label_final[pos[reverse]] = signals["label"].to_numpy(dtype=object)[pos[reverse]]
        auto_relabel[pos[reverse]] = False
    return override, label_final, auto_relabel


def decide(signals: pd.DataFrame, recipe: Recipe, overrides: pd.DataFrame | None = None,
           pairs: Pairs | pd.DataFrame | None = None) -> pd.DataFrame:
    """Keep/reject per image with every reason that applies. Pure and vectorised.

    ``signals`` must be sorted by id (as :func:`fer_core.store.load_signals` returns it). Returns a frame
    aligned with ``signals``:

    - ``flags``: bitmask (see :func:`reason_names`) of every reason that applies to the image, whatever
      its split; ``reasons``: the flags that count, i.e. those of images in the recipe's scope, plus
      "manual" for a reject override;
    - ``keep``: no counting reason, or a keep override (overrides apply within the scope: the test split
      stays untouched unless the scope includes it);
    - ``group``/``representative``: duplicate group (-1 for none) and the copy the policy keeps;
      ``eval_leaked``: a val/test image that has a copy in train;
    - ``override`` (keep/reject/relabel/""), ``label_final`` (the label after accepted relabels).
    """
    # the string columns are read once here (a pyarrow-backed column costs ~40 ms per read at 1M rows)
    ids, split = signals["id"].to_numpy(), signals["split"].to_numpy()
    in_scope = np.isin(split, recipe.scope)
    flags, review = filter_cuts(signals, recipe.filters)
    flags, review, label_capped = cap_label_cut(signals, recipe.labels.class_cap, in_scope, flags, review)
    flags, auto_relabel = relabel_candidates(signals, recipe.labels.policy, flags)
    crowd_bits, crowd_relabel, crowd_label = crowd_marks(signals, recipe.labels.crowd, recipe.labels.crowd_unsure)
    relabel_to = None
    if crowd_relabel.any():     # the crowd's label wins over the model's suggestion
        relabel_to = np.where(crowd_relabel, crowd_label, signals["suggested_label"].to_numpy(dtype=object)
                              if "suggested_label" in signals else None)
        auto_relabel = auto_relabel | crowd_relabel
    flags = flags | crowd_bits
    if isinstance(pairs, pd.DataFrame) or pairs is None:
        pairs = Pairs.from_frame(pairs, ids)
    dm = duplicate_marks(signals, pairs, recipe.duplicates, split)
    flags, review = flags | dm.reject, review | dm.review
    flags, review, class_capped = cap_per_class(signals, recipe.class_cap, recipe.filters, flags, review, in_scope)
    override, label_final, auto_relabel = apply_overrides(signals, overrides, in_scope, auto_relabel, ids, relabel_to)
    reasons = np.where(in_scope, flags, 0)
    reasons[(override == "reject") & in_scope] |= reason_bit("manual")
    keep = (reasons == 0) | ((override == "keep") & in_scope)
    review = review & ~flags  # an image already flagged for rejection on a signal is not also "to review" on it
    return pd.DataFrame({"id": ids, "keep": keep, "reasons": reasons, "flags": flags,
                         "review": review, "group": dm.group, "representative": dm.representative,
                         "eval_leaked": dm.eval_leaked, "override": override, "label_final": label_final,
                         "in_scope": in_scope, "auto_relabel": auto_relabel, "label_capped": label_capped,
                         "class_capped": class_capped, "crowd_relabel": crowd_relabel & auto_relabel})


def cap_per_class(signals: pd.DataFrame, class_cap: float | None, filters: dict, flags: np.ndarray,
                  review: np.ndarray, in_scope: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The recipe-level ``class_cap``: the automatic cuts together remove at most ``class_cap`` of the in-scope
    images of any (split, label). Leak rejections count towards it but are never spared (a training copy of a
    test image would inflate the test accuracy); beyond the cap the least certain rejections are spared, in
    this order: fewest reasons first, extra duplicate copies before signal cuts (a spared copy adds no
    unseen face, a spared outlier may be a blank frame), then the signal cut nearest the cut (an image's
    certainty is the share of in-scope images further past its most extreme cut), then position (= id order).
    Returns new (flags, review, spared): the spared go to review under the same reasons."""
    n = len(flags)
    flags, review = flags.copy(), review.copy()
    spared = np.zeros(n, bool)
    flagged = in_scope & (flags != 0)
    if class_cap is None or not flagged.any():
        return flags, review, spared
    leak = (flags & reason_bit("leak")) != 0
    s_cats, s_codes = _codes(signals, "split")
    l_cats, l_codes = _codes(signals, "label")
    key = s_codes * (len(l_cats) + 1) + (l_codes + 1)            # (split, label); a missing label is a class
    size = np.bincount(key[in_scope], minlength=key.max() + 1)
    allow = np.floor(class_cap * size + 1e-9).astype(np.int64) - np.bincount(key[flagged & leak],
                                                                                       minlength=len(size))
    cand = np.flatnonzero(flagged & ~leak)
    if not len(cand):
        return flags, review, spared
    fbits = flags[cand]
    n_reasons = np.zeros(len(cand), np.int64)
    for i in range(len(reason_names())):
        n_reasons += (fbits >> i) & 1
    filt = np.zeros(len(cand), bool)
    tail = np.ones(len(cand))                                    # 1: no signal cut (nothing is more borderline)
    names = reason_names()
    for col, f in filters.items():
        bit = 1 << names.index(col)
        hit = (fbits & bit) != 0
        if not hit.any():
            continue
        filt |= hit
        v = signals[col].to_numpy(np.float64, na_value=np.nan)
        ref = np.sort(v[in_scope & np.isfinite(v)])
        x = v[cand[hit]]
        below = np.searchsorted(ref, x, side="left") / max(len(ref), 1)
        above = (len(ref) - np.searchsorted(ref, x, side="right")) / max(len(ref), 1)
        side = np.where(x < (f.min if f.min is not None else -np.inf), below, above)
        tail[hit] = np.minimum(tail[hit], side)
    order = cand[np.lexsort((cand, -tail, filt, n_reasons, key[cand]))]   # by class, most spareable first
    k = key[order]
    rank = np.arange(len(order)) - np.searchsorted(k, k, side="left")
    # the most certain rejections stay: within its class an image is spared while more than `allow` remain
    n_class = np.bincount(k, minlength=len(size))
    spare = order[rank < n_class[k] - np.maximum(allow[k], 0)]
    spared[spare] = True
    review[spare] |= flags[spare]
    flags[spare] = 0
    return flags, review, spared
