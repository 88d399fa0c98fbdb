"""What a set of decisions means: reasons as text, counts per split × label, warnings, the funnel."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from fer_core.recipe.vocab import filter_columns, reason_bit, reason_names

def reasons_text(bits: np.ndarray | pd.Series, sep: str = ";") -> np.ndarray:
    """Bitmasks → "sharpness;duplicate" strings (vectorised over the few distinct masks)."""
    bits = np.asarray(bits, dtype=np.int64)
    names = reason_names()
    uniq, inv = np.unique(bits, return_inverse=True)
    texts = np.array([sep.join(nm for i, nm in enumerate(names) if u >> i & 1) for u in uniq], dtype=object)
    return texts[inv]


def has_reason(bits: np.ndarray | pd.Series, name: str) -> np.ndarray:
    return (np.asarray(bits, dtype=np.int64) & reason_bit(name)) != 0


def _codes(signals: pd.DataFrame, col: str):
    """(categories, integer codes) of a column, cached on the frame (signal tables are reused read-only)."""
    cache = signals.attrs.setdefault("_codes", {})
    if col not in cache:
        inv, cats = pd.factorize(signals[col], sort=True)
        cache[col] = (np.asarray(cats).astype(str), inv)
    return cache[col]


def _kept_rejected_by(coded, keep: np.ndarray, order: list[str] | None = None) -> dict:
    cats, inv = coded
    kept = np.bincount(inv, weights=keep, minlength=len(cats)).astype(int)
    total = np.bincount(inv, minlength=len(cats))
    out = {str(c): {"kept": int(k), "rejected": int(t - k)} for c, k, t in zip(cats, kept, total)}
    if order:
        out = {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}
    return out


def summarize(signals: pd.DataFrame, decisions: pd.DataFrame) -> dict:
    """Counts kept/rejected overall, per split, per label and per reason (an image may have several)."""
    from fer_core.sources.labels import CANONICAL

    keep = decisions["keep"].to_numpy()
    out = {"images": int(len(keep)), "kept": int(keep.sum()), "rejected": int((~keep).sum())}
    out["by_split"] = _kept_rejected_by(_codes(signals, "split"), keep, ["train", "val", "test"])
    out["by_label"] = _kept_rejected_by(_codes(signals, "label"), keep, list(CANONICAL))
    bits = decisions["reasons"].to_numpy()
    names = reason_names()
    single = bits & (bits - 1) == 0
    out["by_reason"], out["only_reason"] = {}, {}
    for i, nm in enumerate(names):
        has = ((bits >> i) & 1) == 1
        if has.any():
            out["by_reason"][nm] = int(has.sum())
            out["only_reason"][nm] = int((has & single).sum())
    override = decisions["override"].to_numpy()
    out["overridden"] = int((override != "").sum())
    out["relabelled"] = int(((override == "relabel") & decisions["in_scope"].to_numpy()).sum())
    if "auto_relabel" in decisions:
        out["auto_relabelled"] = int((decisions["auto_relabel"].to_numpy() & keep).sum())
    if "label_capped" in decisions:
        out["label_capped"] = int(decisions["label_capped"].to_numpy().sum())
    if "class_capped" in decisions:
        out["class_capped"] = int(decisions["class_capped"].to_numpy().sum())
    g = decisions["group"].to_numpy()
    out["duplicate_groups"] = int(len(np.unique(g[g >= 0])))
    split = signals["split"].to_numpy()
    leaked = decisions["eval_leaked"].to_numpy()
    out["eval_leaked"] = {s: int((leaked & (split == s)).sum()) for s in ("val", "test")}
    out["train_leak_copies"] = int(has_reason(decisions["flags"], "leak").sum())
    if "review" in decisions:
        rv = decisions["review"].to_numpy() & np.where(decisions["in_scope"].to_numpy(), -1, 0)
        out["to_review"] = {nm: int(((rv >> i) & 1).sum()) for i, nm in enumerate(names) if ((rv >> i) & 1).any()}
    if "crowd_label" in signals:
        cl = signals["crowd_label"].fillna("").to_numpy(dtype=object)
        scope = decisions["in_scope"].to_numpy()
        # relabelled by the crowd policy (not a model suggestion that happens to equal the crowd's label)
        to_crowd = (decisions["crowd_relabel"].to_numpy() if "crowd_relabel" in decisions
                    else np.zeros(len(cl), bool)) & keep
        out["crowd"] = {"voted": int(((cl != "") & scope).sum()),
                        "relabelled_to_crowd": int(to_crowd.sum()),
                        "set_aside": int(has_reason(decisions["reasons"], "crowd").sum())}
    out["class_removals"] = [w._asdict() for w in class_removals(signals, decisions)]
    out["class_imbalance"] = class_imbalance(signals, decisions)
    out["split_rejections"] = split_rejections(signals, decisions)
    out["needs_choice"] = large_cuts(signals, decisions)
    out["split_rejections"] += out["needs_choice"]       # shown wherever the pages show the split warnings
    return out


# Cuts that remove more than this share of the images in scope, or of one class, are never applied silently:
# the person sees the share and why, and chooses (issue 18: on CK+ the default duplicate policy keeps one frame
# of each sequence and so removes about two thirds of the dataset).
LARGE_CUT = 0.20
_WHY = {"duplicate": ("extra copies in {groups:,} duplicate groups (near copies of one photograph, frames of one "
                      "sequence) — the policy keeps one per group",
                      "keep it, or keep every copy (Duplicates page: policy keep_all; recipe "
                      "duplicates.policy: keep_all)"),
        "crowd": ("images whose crowd votes give no label (a tie, unknown or not-a-face)",
                  "keep it, or keep them under their given label (recipe labels.crowd_unsure)"),
        "label_quality": ("likely mislabelled images (label checks)",
                          "keep it, relabel instead of dropping, or cap it per class (Quality page)"),
        "label_margin": ("likely mislabelled images (label checks)",
                         "keep it, relabel instead of dropping, or cap it per class (Quality page)")}


def large_cuts(signals: pd.DataFrame, decisions: pd.DataFrame, limit: float = LARGE_CUT,
               min_images: int = 10) -> list[dict]:
    """Reasons (a signal cut, duplicates, label issues; never leaks, always dropped, or the person's own
    rejects) that alone remove more than ``limit`` of the in-scope images or of one in-scope class, with why and
    what to choose. Each: kind "large_cut", reason, label (None: the whole scope), rejected, of, share, why,
    choice."""
    scope = decisions["in_scope"].to_numpy()
    if not scope.any():
        return []
    bits = decisions["reasons"].to_numpy()[scope]
    rejected = ~decisions["keep"].to_numpy()[scope]
    cats, inv = _codes(signals, "label")
    inv_s = inv[scope]
    total = np.bincount(inv_s[inv_s >= 0], minlength=len(cats))
    g = decisions["group"].to_numpy()
    out = []
    for i, nm in enumerate(reason_names()):
        if nm in ("leak", "manual", "conflict"):
            continue
        has = (((bits >> i) & 1) == 1) & rejected
        n = int(has.sum())
        if n < min_images:
            continue
        why, choice = _WHY.get(nm, (f"beyond the cut on {nm}", "keep it, or loosen or switch off that cut "
                                    "(Quality page)"))
        why = why.format(groups=int(len(np.unique(g[g >= 0]))))
        per = np.bincount(inv_s[inv_s >= 0], weights=has[inv_s >= 0], minlength=len(cats))
        if n / len(has) > limit:      # the whole scope (then no line per class: it is every class)
            rows = [(None, n, len(has))]
        else:
            rows = [(str(c), int(k), int(t)) for c, k, t in zip(cats, per, total)
                    if t and k >= min_images and k / t > limit]
        out += [{"kind": "large_cut", "reason": nm, "label": lab, "rejected": k, "of": t, "share": k / t,
                 "why": why, "choice": choice} for lab, k, t in rows]
    return out


def split_rejections(signals: pd.DataFrame, decisions: pd.DataFrame, limit: float = 0.5) -> list[dict]:
    """Splits of which the decisions reject more than ``limit``: almost always a cut-off on the wrong side
    (e.g. a brightness max of 1 with scope train+test rejects nearly every image), never a sensible clean-up."""
    cats, inv = _codes(signals, "split")
    total = np.bincount(inv, minlength=len(cats))
    rejected = np.bincount(inv, weights=~decisions["keep"].to_numpy(), minlength=len(cats)).astype(int)
    return [{"split": str(c), "rejected": int(r), "of": int(t), "share": float(r / t)}
            for c, r, t in zip(cats, rejected, total) if t and r / t > limit]


def split_rejection_text(w: dict) -> str:
    if w.get("kind") == "large_cut":
        what = "the images in scope" if w["label"] is None else f"**{w['label']}**"
        return (f"`{w['reason']}` alone removes {w['share']:.0%} of {what} ({w['rejected']:,} of {w['of']:,}): "
                f"{w['why']}. A cut this large needs your choice: {w['choice']}")
    return (f"The recipe rejects {w['share']:.0%} of the **{w['split']}** split ({w['rejected']:,} of {w['of']:,} "
            "images): check its cut-offs, one may be on the wrong side")


class ClassRemoval(NamedTuple):
    split: str
    label: str
    before: int      # images of the class in the split
    after: int       # kept by the whole recipe (overrides included)
    share: float     # removed share of the class
    overall: float   # removed share of the whole split


def class_removals(signals: pd.DataFrame, decisions: pd.DataFrame, ratio: float = 2.0, floor: float = 0.10,
                   min_images: int = 10) -> list[ClassRemoval]:
    """Classes that the whole recipe (every reason together, overrides included) strips: per split (train
    first), the labels whose removed share is more than ``ratio`` × the split's removed share, more than
    ``floor``, and at least ``min_images`` images. Unlike :func:`class_imbalance` (one reason at a time), it
    sees cuts that add up: FER2013's default recipe removes 37.6% of training `disgust` (436 → 272) and 35.5%
    of `surprise` against 13.9% of the training split, though no single reason takes more than 22%."""
    keep = decisions["keep"].to_numpy()
    s_cats, s_codes = _codes(signals, "split")
    l_cats, l_codes = _codes(signals, "label")
    out = []
    first = ["train", "val", "test"]
    for si in sorted(range(len(s_cats)), key=lambda i: (first + [s_cats[i]]).index(s_cats[i])):
        in_split = s_codes == si
        removed = int((~keep[in_split]).sum())
        if not removed:
            continue
        overall = removed / int(in_split.sum())
        lc = l_codes[in_split]
        total = np.bincount(lc[lc >= 0], minlength=len(l_cats))
        kept = np.bincount(lc[lc >= 0], weights=keep[in_split][lc >= 0], minlength=len(l_cats)).astype(int)
        rows = [ClassRemoval(str(s_cats[si]), str(c), int(t), int(k), float((t - k) / t), overall)
                for c, t, k in zip(l_cats, total, kept)
                if t and t - k >= min_images and (t - k) / t > max(ratio * overall, floor)]
        out += sorted(rows, key=lambda w: -w.share)
    return out


def removal_text(w: ClassRemoval | dict) -> str:
    w = w if isinstance(w, ClassRemoval) else ClassRemoval(**w)
    split = {"train": "training", "val": "validation"}.get(w.split, w.split)
    return (f"The recipe removes {w.share:.1%} of {split} **{w.label}** ({w.before:,} → {w.after:,}) against "
            f"{w.overall:.1%} of all {split} images")


def class_imbalance(signals: pd.DataFrame, decisions: pd.DataFrame, ratio: float = 3.0, margin: float = 0.05,
                    min_images: int = 10) -> list[dict]:
    """Reasons that hit one class much harder than the rest of the scope: for each reason, the labels whose
    share rejected by it is at least ``ratio`` × the share over all in-scope images and ``margin`` above it
    (and ≥ ``min_images`` images). A global cut on a signal that depends on the class — label_quality is
    the model's probability of the given label, which is low for every image of a rare class — can strip a
    small class; FER2013's default label cut removed 31% of `disgust` (3% overall), and its recall on the
    test split collapsed in the A/B (bench/RESULTS.md)."""
    scope = decisions["in_scope"].to_numpy()
    if not scope.any():
        return []
    cats, inv = _codes(signals, "label")
    inv_s = inv[scope]
    total = np.bincount(inv_s, minlength=len(cats))
    bits = decisions["reasons"].to_numpy()[scope]
    keep = decisions["keep"].to_numpy()[scope]
    out = []
    for i, nm in enumerate(reason_names()):
        has = (((bits >> i) & 1) == 1) & ~keep
        n = int(has.sum())
        if n < min_images:
            continue
        overall = n / len(has)
        per = np.bincount(inv_s, weights=has, minlength=len(cats))
        for c, k, t in zip(cats, per, total):
            if t and k >= min_images and k / t >= max(ratio * overall, overall + margin):
                out.append({"reason": nm, "label": str(c), "rejected": int(k), "of": int(t),
                            "share": float(k / t), "overall_share": float(overall)})
    return out


def imbalance_text(w: dict) -> str:
    return (f"`{w['reason']}` rejects {w['share']:.0%} of **{w['label']}** ({w['rejected']:,} of {w['of']:,}) "
            f"against {w['overall_share']:.1%} of all images in scope")


def format_summary(s: dict) -> str:
    lines = [f"{s['images']:,} images: {s['kept']:,} kept, {s['rejected']:,} rejected"]
    for k, v in s["by_split"].items():
        lines.append(f"  {k:6s} kept {v['kept']:7,d}  rejected {v['rejected']:6,d}")
    lines.append("per label (kept / rejected):")
    for k, v in s["by_label"].items():
        lines.append(f"  {k:9s} {v['kept']:7,d} / {v['rejected']:,}")
    lines.append("per reason (an image may have several; 'only' = its single reason):")
    for k, v in s["by_reason"].items():
        lines.append(f"  {k:13s} {v:6,d}  (only {s['only_reason'].get(k, 0):,})")
    lines.append(f"duplicate groups: {s['duplicate_groups']:,}; val/test images with a copy in train: "
                 f"val {s['eval_leaked']['val']:,}, test {s['eval_leaked']['test']:,} "
                 f"({s['train_leak_copies']:,} training copies flagged)")
    if s.get("to_review"):
        lines.append("sent to review (not rejected): " + ", ".join(f"{k} {v:,}" for k, v in s["to_review"].items()))
    if s.get("auto_relabelled"):
        lines.append(f"relabelled to the suggested label (label policy 'relabel'): {s['auto_relabelled']:,}")
    if s.get("label_capped"):
        lines.append(f"label issues spared by the per-class cap (left for review): {s['label_capped']:,}")
    if s.get("class_capped"):
        lines.append(f"rejections spared by the recipe's per-class cap (left for review): {s['class_capped']:,}")
    if s["overridden"]:
        lines.append(f"manual overrides: {s['overridden']:,} ({s['relabelled']:,} relabels applied)")
    for w in s.get("split_rejections", []):
        lines.append("WARNING: " + split_rejection_text(w).replace("**", "").replace("`", "") + ".")
    for w in s.get("class_removals", []):
        lines.append("WARNING: " + removal_text(w).replace("**", "") + " — a small class may vanish; cap the removal "
                     "per class (recipe class_cap; decide --class-cap) or loosen the cuts that hit it.")
    for w in s.get("class_imbalance", []):
        lines.append("WARNING: " + imbalance_text(w).replace("**", "").replace("`", "")
                     + " — a small class may vanish; check it on the Review page or loosen that cut.")
    return "\n".join(lines)


def funnel(decisions: pd.DataFrame) -> list[tuple[str, int]]:
    """Images left in scope after each family of reasons, in order (a keep override survives every step)."""
    bits = decisions["reasons"].to_numpy()
    scope = decisions["in_scope"].to_numpy()
    keep_override = (decisions["override"].to_numpy() == "keep") & scope
    names = reason_names()
    signal_mask = 0
    for nm in filter_columns():
        signal_mask |= 1 << names.index(nm)
    steps = [("in scope", scope)]
    alive = scope.copy()
    crowd = (("after crowd votes", reason_bit("crowd")),) if ((bits & reason_bit("crowd")) != 0).any() else ()
    for label, mask in (("after quality filters", signal_mask), ("after duplicates", reason_bit("duplicate")),
                        ("after leakage", reason_bit("leak")), *crowd, ("after manual rejects", reason_bit("manual"))):
        alive = alive & (((bits & mask) == 0) | keep_override)
        steps.append((label, alive))
    return [(k, int(v.sum())) for k, v in steps]
