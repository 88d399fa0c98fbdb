"""Computations behind the Quality page, kept apart from Streamlit calls so they can be timed (bench)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fer_core import recipe as recipe_mod
from fer_core.signals.base import COLUMN_META

LABEL_COLORS = {"angry": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#ff7f0e", "sad": "#1f77b4",
                "surprise": "#e377c2", "neutral": "#7f7f7f", "contempt": "#17becf"}


def threshold_grid(values: np.ndarray, extra=(), logx: bool = False) -> list[float]:
    """Slider positions: the data's quantiles (dense where the data is) plus evenly spaced values over its
    range (so the sparse tails, where cuts live, are reachable too), plus the given values."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return sorted({float(x) for x in extra if x is not None}) or [0.0]
    q = np.quantile(v, np.linspace(0, 1, 401))
    lo, hi = float(v.min()), float(v.max())
    if logx and hi > 0:
        pos = v[v > 0]
        even = np.concatenate([[lo], np.geomspace(max(pos.min(), 1e-6), hi, 200)])
    else:
        even = np.linspace(lo, hi, 200)
    grid = {float(f"{x:.4g}") for x in np.concatenate([q, even])}
    grid |= {float(f"{x:.4g}") for x in extra if x is not None}
    return sorted(grid)


def use_log(col: str) -> bool:
    return COLUMN_META[col].transform == "log"


def hist_bins(values: np.ndarray, labels: np.ndarray | None, logx: bool, nbins: int = 80):
    v = values.astype(np.float64)
    ok = np.isfinite(v)
    if logx:
        ok &= v > 0
    x = np.log10(v[ok]) if logx else v[ok]
    if x.size == 0:
        return np.array([0.0, 1.0]), {}
    edges = np.histogram_bin_edges(x, bins=nbins)
    if labels is None:
        return edges, {"all": np.histogram(x, edges)[0]}
    lab = labels[ok]
    return edges, {l: np.histogram(x[lab == l], edges)[0] for l in pd.unique(lab)}


def histogram_data(col: str, edges: np.ndarray, counts: dict, f: recipe_mod.Filter, logx: bool) -> dict:
    """What ``ui.views.histogram_view`` draws: bars per label, the cut(s) as red lines with the rejected side
    shaded, review cuts dashed orange, and tick labels in the signal's units on a log axis. The legend is a row
    under the plot (above it, it covered the cut labels)."""
    meta = COLUMN_META[col]
    series = [{"name": str(lab), "y": np.asarray(c).astype(int).tolist(), "color": LABEL_COLORS.get(lab, "#4c78a8")}
              for lab, c in counts.items()]
    tx = (lambda t: float(np.log10(t))) if logx else float
    cuts = []
    if f.enabled:
        if f.min is not None and (not logx or f.min > 0):
            cuts.append({"x": tx(f.min), "text": f"min {f.min:,.4g}", "color": "#d62728", "shade": "left", "dash": False})
        if f.max is not None and (not logx or f.max > 0):
            cuts.append({"x": tx(f.max), "text": f"max {f.max:,.4g}", "color": "#d62728", "shade": "right", "dash": False})
        for v, label, side in ((f.review_min, "review below", "left"), (f.review_max, "review above", "right")):
            if v is not None and (not logx or v > 0):
                cuts.append({"x": tx(v), "text": f"{label} {v:,.4g}", "color": "#c77700", "shade": None, "dash": True,
                             "side": side})
    xticks = None
    if logx:
        lo, hi = np.floor(edges[0]), np.ceil(edges[-1])
        ticks = [float(v) for e in np.arange(lo, hi + 1) for v in (e, e + np.log10(2), e + np.log10(5))
                 if edges[0] <= v <= edges[-1]]
        xticks = [(t, _tick(10 ** t)) for t in ticks]
    return {"edges": edges, "series": series, "cuts": cuts, "xticks": xticks,
            "xtitle": f"{meta.title} ({meta.unit})" + (" — log scale" if logx else "")}


def _tick(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:.2g}"


def distance_to_cut(values: np.ndarray, f: recipe_mod.Filter, logx: bool) -> np.ndarray:
    t = (lambda x: np.log10(np.maximum(x, 1e-9))) if logx else (lambda x: x)
    d = np.full(len(values), np.inf)
    tv = t(values)
    if f.min is not None:
        d = np.minimum(d, np.abs(tv - t(np.float64(f.min))))
    if f.max is not None:
        d = np.minimum(d, np.abs(tv - t(np.float64(f.max))))
    return d


def badness(col: str, values: np.ndarray) -> np.ndarray:
    meta = COLUMN_META[col]
    v = values.astype(np.float64)
    if meta.direction == "low":
        return -v
    if meta.direction == "high":
        return v
    med = np.nanmedian(v)
    return np.abs(v - med)


def effective_cut(f: recipe_mod.Filter) -> recipe_mod.Filter:
    """The cut the montages show: the review cut where there is one (the borderline a person tunes),
    otherwise the reject cut."""
    return recipe_mod.Filter(True, f.review_min if f.review_min is not None else f.min,
                             f.review_max if f.review_max is not None else f.max)


def montage_sets(col: str, values: np.ndarray, in_scope: np.ndarray, f: recipe_mod.Filter, n: int = 24):
    """Positions of: flagged nearest the cut, kept nearest the cut, worst-scored (all within scope)."""
    f = effective_cut(f)
    logx = use_log(col)
    finite = np.isfinite(values)
    cut = recipe_mod.beyond(values, f.min, f.max)
    flag = cut & in_scope & finite
    keep = ~cut & in_scope & finite
    dist = distance_to_cut(values, f, logx)
    rej_idx = np.flatnonzero(flag)
    rej_near = rej_idx[np.argsort(dist[rej_idx], kind="stable")][:n]
    kept_idx = np.flatnonzero(keep)
    kept_near = kept_idx[np.argsort(dist[kept_idx], kind="stable")][:n] if (f.min is not None or f.max is not None) else kept_idx[:0]
    sc = np.flatnonzero(in_scope & finite)
    worst = sc[np.argsort(-badness(col, values)[sc], kind="stable")][:n]
    return rej_near, kept_near, worst
