"""How far can automatic label curation move FER2013's training labels towards the crowd's (issue 17), without
training: for the recipe's label cut at growing sizes, dropped or relabelled to the model's suggestion, the share of
the kept training images whose final label equals the FER+ majority, against raw (no label cut) and the crowd arm
(every voted image relabelled to the majority: 100% by construction).

    python bench/bench_label_agreement.py --cache DIR [--recipe R.yaml] [--name fer2013]

Needs FER2013's label signals (`labels fer2013`) and FER+ linked (`link fer2013 ferplus`). Agreement is counted
over kept training images whose crowd majority is one of the dataset's classes (ties, unknown, not-a-face and
contempt left out, as the A/B's crowd arm sets them aside). A training label's agreement with the crowd is not test
accuracy, but it is what the crowd arm changes: the A/B says how much test accuracy a given change buys.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from _common import machine

CUTS = (0.0, 0.025, 0.05, 0.10, 0.20, 0.30, 0.40)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--name", default="fer2013")
    ap.add_argument("--recipe", default=None, help="a recipe file (default: the data-derived default)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    from fer_core import recipe as recipe_mod
    from fer_core.workspace import Workspace

    ws = Workspace(args.name, args.cache)
    inputs = ws.inputs()
    rec = recipe_mod.Recipe.load(args.recipe) if args.recipe else ws.default_recipe(inputs=inputs)
    sig = inputs.signals.set_index("id")
    for col in ("crowd_label", "label_quality", "suggested_label"):
        if col not in sig.columns:
            raise SystemExit(f"{args.name} has no '{col}' signal: compute label signals and link FER+ first.")
    train = sig["split"] == "train"
    lq = sig.loc[train, "label_quality"].to_numpy(float)
    classes = set(sig.loc[train, "label"].dropna())

    def agreement(r) -> dict:
        d = ws.decide(r, inputs=inputs).set_index("id")
        d = d.loc[sig.index[train]]
        crowd = sig.loc[d.index, "crowd_label"].fillna("").to_numpy(object)
        usable = np.isin(crowd, list(classes))
        kept = d["keep"].to_numpy()
        final = d["label_final"].to_numpy(object)
        m = kept & usable
        return {"kept": int(kept.sum()), "voted_kept": int(m.sum()), "agree": float((final[m] == crowd[m]).mean()),
                "relabelled": int((kept & (final != sig.loc[d.index, "label"].to_numpy(object))).sum())}

    base = rec.with_filter("label_quality", enabled=False)
    rows = [("raw: every image, labels as given", agreement(recipe_mod.Recipe.from_dict(
        {**base.to_dict(), "filters": {k: {**v, "enabled": False} for k, v in base.to_dict()["filters"].items()},
         "duplicates": {**base.to_dict()["duplicates"], "policy": "keep_all", "drop_leaked": False}})))]
    rows.append(("the recipe without its label cut", agreement(base)))
    cap = rec.labels.class_cap
    rows.append((f"the recipe as it is (label cut at {rec.filters['label_quality'].min:.4f}, class cap {cap})",
                 agreement(rec)))
    for f in CUTS[1:]:
        thr = float(np.quantile(lq, f))
        for policy in ("drop", "relabel"):
            r = rec.with_filter("label_quality", enabled=True, min=thr).with_labels(policy=policy, class_cap=None)
            rows.append((f"label cut: lowest {f * 100:.1f}% label quality, {policy}", agreement(r)))
    rows.append(("crowd arm: every voted image relabelled to the majority", agreement(
        base.with_labels(crowd="relabel", crowd_unsure="drop"))))
    print(f"{args.name}: {int(train.sum()):,} training images; recipe {rec.name} [{rec.fingerprint()}]")
    t = sig.loc[train]
    crowd_t = t["crowd_label"].fillna("").to_numpy(object)
    usable_t = np.isin(crowd_t, list(classes))
    print("| lowest label quality | images (with a crowd majority) | given label = crowd | suggested label = crowd |")
    print("|---|---:|---:|---:|")
    for f in CUTS[1:]:
        cut = (lq <= np.quantile(lq, f)) & usable_t
        print(f"| {f * 100:.1f}% | {int(cut.sum()):,} | {(t['label'].to_numpy(object)[cut] == crowd_t[cut]).mean() * 100:.1f}% "
              f"| {(t['suggested_label'].to_numpy(object)[cut] == crowd_t[cut]).mean() * 100:.1f}% |")
    print("| training set | kept | kept with a crowd majority | final label = crowd majority | relabelled |")
    print("|---|---:|---:|---:|---:|")
    for name, a in rows:
        print(f"| {name} | {a['kept']:,} | {a['voted_kept']:,} | {a['agree'] * 100:.1f}% | {a['relabelled']:,} |")
    print(json.dumps({name: a for name, a in rows}))


if __name__ == "__main__":
    main()
