"""Default thresholds derived from the dataset's own distribution (never fixed constants)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from fer_core.signals.base import COLUMN_META
from fer_core.recipe.model import Duplicates, Filter, LabelPolicy, Recipe, rounded
from fer_core.recipe.vocab import LABEL_CUTS, filter_columns

# ---- defaults from the data ---------------------------------------------------------------------

def _forward(x: np.ndarray, transform: str) -> np.ndarray:
    return np.log1p(np.maximum(x, 0)) if transform == "log" else x


def _backward(x: float, transform: str) -> float:
    return float(np.expm1(x)) if transform == "log" else float(x)


def robust_cut(values: np.ndarray, direction: str, k: float, transform: str = "linear",
               lower_bound: float | None = None, upper_bound: float | None = None) -> tuple[float | None, float | None]:
    """(min, max) cut-offs from the distribution of ``values``: median ± k·MAD on the transformed scale.

    Where the distribution is too concentrated for MAD (≥ 25% of the values equal the median, e.g. a
    clipping share that is 0 for most images), the 0.5% / 99.5% percentile is used instead.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None, None
    t = _forward(v, transform)
    med = float(np.median(t))
    mad = 1.4826 * float(np.median(np.abs(t - med)))
    concentrated = mad == 0 or float(np.mean(t == med)) >= 0.25
    lo = hi = None
    if direction in ("low", "both"):
        lo = float(np.percentile(v, 0.5)) if concentrated else _backward(med - k * mad, transform)
    if direction in ("high", "both"):
        hi = float(np.percentile(v, 99.5)) if concentrated else _backward(med + k * mad, transform)
    if lo is not None and lower_bound is not None and lo < lower_bound:
        lo = None if direction == "low" else float(lower_bound)
    if hi is not None and upper_bound is not None and hi > upper_bound:
        hi = None if direction == "high" else float(upper_bound)
    return lo, hi


def _low_tail_cut(v: np.ndarray, q: float) -> float:
    """A cut with at least q% of the values strictly below it: halfway between the ⌈q%·n⌉-th smallest value
    and the next larger distinct value (ties at the bottom, e.g. many zeros, stay below the cut)."""
    s = np.sort(v.astype(np.float64))
    k = max(1, int(np.ceil(q / 100.0 * len(s))))
    at = s[k - 1]
    above = s[s > at]
    return float((at + above[0]) / 2) if len(above) else float(at)


def default_recipe(signals: pd.DataFrame, name: str = "default", scope: list[str] | None = None) -> Recipe:
    """The data-derived starting recipe: one filter per signal column present, cut-offs from its distribution."""
    scope = scope or ["train"]
    base = signals[signals["split"].isin(scope)] if "split" in signals else signals
    if base.empty:
        base = signals
    filters = {}
    for col in filter_columns():
        if col not in signals:
            continue
        m = COLUMN_META[col]
        vals = base[col].to_numpy()
        lo, hi = robust_cut(vals, m.direction, m.k, m.transform, m.lower_bound, m.upper_bound)
        rlo = rhi = None
        if m.default_rule == "percentile":
            v = vals[np.isfinite(vals.astype(np.float64))] if len(vals) else vals
            lo = hi = None
            if len(v):
                def cap(x, c):
                    return min(x, c) if c is not None else x
                if m.direction == "low":
                    rlo = cap(_low_tail_cut(v, m.review_q), m.review_cap)
                    lo = None if m.review_only else cap(_low_tail_cut(v, m.reject_q), m.reject_cap)
                else:
                    rhi = float(np.percentile(v, 100 - m.review_q))
                    hi = None if m.review_only else float(np.percentile(v, 100 - m.reject_q))
        elif m.review_only:
            (rlo, rhi), lo, hi = (lo, hi), None, None
        elif m.review_k is not None:
            rlo, rhi = robust_cut(vals, m.direction, m.review_k, m.transform, m.lower_bound, m.upper_bound)
        any_cut = any(v is not None for v in (lo, hi, rlo, rhi))
        filters[col] = Filter(m.default_enabled and any_cut, *(rounded(v) for v in (lo, hi, rlo, rhi)))
    derived = {"dataset": signals.attrs.get("dataset"), "catalog_hash": signals.attrs.get("catalog_hash"),
               "method": "median ± k·MAD per signal (k in its metadata); 0.5/99.5 percentiles where MAD is degenerate; "
              "face score: 1% / 0.3% percentiles capped at 0.5 / 0.2",
               "images": int(len(base))}
    labels = LabelPolicy()
    # one label cut at most, the first of LABEL_CUTS enabled by default (label quality; the margin is a choice)
    on = [c for c in LABEL_CUTS if c in filters and filters[c].enabled]
    for c in on[1:]:
        filters[c] = replace(filters[c], enabled=False)
    cut = next((c for c in on if filters[c].min is not None), None)
    if cut is not None:
        q = base[cut].to_numpy(np.float64, na_value=np.nan)
        share = float(np.mean(q[np.isfinite(q)] < filters[cut].min)) if np.isfinite(q).any() else 0.0
        labels = LabelPolicy(class_cap=round(max(2 * share, 0.01), 4))
        derived["method"] += f"; label cut ({cut}): at most 2x its overall share of any one class"
    own = signals.attrs.get("dataset")
    if "crowd_label" in base and own is not None and signals.attrs.get("labels_are_votes"):
        # the votes are the dataset's own labels (FER+): a tie, unknown or not-a-face is no label to train on
        labels = replace(labels, crowd_unsure="drop")
        derived["method"] += "; crowd votes: ties, unknown and not-a-face majorities out of training"
    return Recipe(name=name, scope=scope, filters=filters, duplicates=Duplicates(), derived_from=derived,
                  labels=labels)
