"""Honest evaluation: accuracy, macro-F1, per-class recall, confusion matrix, 95% bootstrap intervals, on
the full test split and on the test split without the images that have a copy in training."""

from __future__ import annotations

import numpy as np


def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def _f1_from_conf(c: np.ndarray) -> np.ndarray:
    """Macro-F1 of one (k, k) or many (b, k, k) confusion matrices (rows = truth)."""
    tp = np.diagonal(c, axis1=-2, axis2=-1).astype(np.float64)
    support = c.sum(-1)
    predicted = c.sum(-2)
    denom = support + predicted
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    present = support > 0  # macro over the classes present in the truth (as sklearn with labels=present)
    return (f1 * present).sum(-1) / np.maximum(present.sum(-1), 1)


def bootstrap(y: np.ndarray, pred: np.ndarray, k: int, n_boot: int = 1000, seed: int = 0) -> dict:
    n = len(y)
    if n == 0:
        return {"accuracy": [None, None], "macro_f1": [None, None]}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    yb, pb = y[idx], pred[idx]
    acc = (yb == pb).mean(1)
    flat = (np.arange(n_boot)[:, None] * k * k + yb * k + pb).ravel()
    conf = np.bincount(flat, minlength=n_boot * k * k).reshape(n_boot, k, k)
    f1 = _f1_from_conf(conf)
    q = lambda v: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]  # noqa: E731
    return {"accuracy": q(acc), "macro_f1": q(f1)}


def block(y: np.ndarray, pred: np.ndarray, classes: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    k = len(classes)
    c = confusion(y, pred, k)
    support = c.sum(1)
    recall = np.where(support > 0, np.diagonal(c) / np.maximum(support, 1), np.nan)
    return {
        "n": int(len(y)),
        "accuracy": float((y == pred).mean()) if len(y) else None,
        "macro_f1": float(_f1_from_conf(c)) if len(y) else None,
        "per_class_recall": {cl: (None if np.isnan(r) else float(r)) for cl, r in zip(classes, recall)},
        "confusion": c.tolist(),
        "ci95": bootstrap(y, pred, k, n_boot, seed),
    }


def evaluate(y: np.ndarray, probs: np.ndarray, classes: list[str], leaked: np.ndarray | None,
             n_boot: int = 1000, seed: int = 0) -> dict:
    pred = probs.argmax(1)
    out = {"classes": list(classes), "test": block(y, pred, classes, n_boot, seed)}
    if leaked is not None:
        out["test_without_leaked"] = block(y[~leaked], pred[~leaked], classes, n_boot, seed)
        out["test_leaked_images"] = int(leaked.sum())
    else:
        out["test_without_leaked"] = None
    return out


def paired_difference(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Accuracy of arm b minus arm a, paired over seeds and test images.

    ``correct_*``: (seeds, n_test) booleans, seed s of both arms trained with the same seed. The interval
    resamples the seeds (when more than one) and the test images together."""
    a = np.asarray(correct_a, np.float64)
    b = np.asarray(correct_b, np.float64)
    s, n = a.shape
    d = b - a  # per seed, per image
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for i in range(n_boot):
        ss = rng.integers(0, s, s) if s > 1 else np.zeros(1, np.int64)
        ii = rng.integers(0, n, n)
        boots[i] = d[np.ix_(ss, ii)].mean()
    lo, hi = np.percentile(boots, [2.5, 97.5])
    per_seed = d.mean(1)
    return {"difference": float(d.mean()), "ci95": [float(lo), float(hi)], "per_seed": per_seed.tolist(),
            "within_noise": bool(lo <= 0 <= hi)}


def captured_share(correct_base: np.ndarray, correct_arm: np.ndarray, correct_ref: np.ndarray, n_boot: int = 2000,
                   seed: int = 0) -> dict:
    """How much of a reference arm's gain over a base an arm captures: (arm − base) / (ref − base) in accuracy,
    e.g. the automatic recipe's share of what relabelling every image to the crowd's majority gives over raw.

    ``correct_*``: (seeds, n_test) booleans, paired by seed. The interval resamples the seeds (when more than one)
    and the test images together, as :func:`paired_difference` does, and takes the ratio in each resample. A share
    is given only when the reference beats the base beyond noise: with no gain to capture a ratio means nothing
    (``share`` None and ``why`` says so)."""
    a, b, c = (np.asarray(x, np.float64) for x in (correct_base, correct_arm, correct_ref))
    s, n = a.shape
    gain, ref_gain = b - a, c - a
    rng = np.random.default_rng(seed)
    num, den = np.empty(n_boot), np.empty(n_boot)
    for i in range(n_boot):
        ss = rng.integers(0, s, s) if s > 1 else np.zeros(1, np.int64)
        ii = rng.integers(0, n, n)
        num[i], den[i] = gain[np.ix_(ss, ii)].mean(), ref_gain[np.ix_(ss, ii)].mean()
    lo_ref, hi_ref = np.percentile(den, [2.5, 97.5])
    out = {"gain": float(gain.mean()), "reference_gain": float(ref_gain.mean()),
           "reference_ci95": [float(lo_ref), float(hi_ref)], "share": None, "ci95": None, "why": None}
    if not lo_ref > 0:
        out["why"] = ("the reference is worse than the base beyond noise" if hi_ref < 0
                      else "the reference is within noise of the base: there is no gain to capture")
        return out
    ok = den > 0                     # ≥ 97.5% of resamples here; a ratio over a gain of 0 or less means nothing
    lo, hi = np.percentile(num[ok] / den[ok], [2.5, 97.5])
    out.update(share=float(gain.mean() / ref_gain.mean()), ci95=[float(lo), float(hi)])
    return out
