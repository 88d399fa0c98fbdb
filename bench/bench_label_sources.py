"""Which model's out-of-fold probabilities rank FER2013's label errors best, measured against the FER+ crowd (issue 17:
the label ranking's precision is what limits the recipe's label cut). No training of the A/B model: each ranking is
scored by how many of its most suspect training images the crowd gives another majority class (precision at k; the
recipe's default label cut removes ~4,500 images), the rate over all training images with usable votes as the
baseline, and by the out-of-fold accuracy against the given and the crowd's labels.

Sources: the stored label signals' CNN folds (`labels fer2013`: averaged class probabilities ``p_<class>``), a
multinomial logistic regression on HOG features (PCA 300; the probe of bench_probe_ab.py) fitted out of fold on the
same folds, and their averages. Ranking: cleanlab's self-confidence, as the product's ``label_quality``.

With ``--probe``, also what precision a drop-only label cut needs: training sets that drop n images of which a share p
are ones the crowd disputes (drawn at random within the disputed and the undisputed training images, so the choice
is independent of any model), fitted by bench_probe_ab.py's linear probe and scored on FER+ Test's crowd majority
against raw — the gain as a function of the ranking's precision at the cut's size.

    python bench/bench_label_sources.py --cache DIR [--name fer2013] [--folds 5] [--probe] [--json F]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _common import machine
from bench_probe_ab import hog_features


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--name", default="fer2013")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--C", type=float, default=0.1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--probe", action="store_true", help="also the probe's gain against the precision of a drop")
    ap.add_argument("--draws", type=int, default=2, help="random draws per (size, precision) with --probe")
    ap.add_argument("--no-grid", action="store_true", help="with --probe: only the stored ranking's own drops")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    from cleanlab.rank import get_label_quality_scores
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from fer_core import crowd as crowd_mod, datasets
    from fer_core.train.data import pixels
    from fer_core.train.labels import folds_of
    from fer_core.workspace import Workspace

    t0 = time.perf_counter()
    sig = Workspace(args.name, args.cache).inputs().signals.reset_index(drop=True)
    train = (sig["split"] == "train").to_numpy()
    tr = sig[train].reset_index(drop=True)
    classes = sorted(c[2:] for c in tr.columns if c.startswith("p_"))
    if not classes or "crowd_label" not in tr:
        raise SystemExit(f"{args.name} needs its label signals (labels {args.name}) and a crowd link (FER+).")
    y = np.array([classes.index(c) for c in tr["label"]])
    p_cnn = tr[[f"p_{c}" for c in classes]].to_numpy(np.float64)
    ids_all, px = pixels(datasets.load(args.name, args.cache), 48)
    X_all = hog_features(px[np.searchsorted(ids_all, sig["id"].to_numpy())])
    scaler = StandardScaler().fit(X_all[train])
    pca = PCA(300, random_state=0).fit(scaler.transform(X_all[train]))
    Xs_all = pca.transform(scaler.transform(X_all)).astype(np.float32)       # the probe's space (bench_probe_ab.py)
    Xs = Xs_all[train]
    fold = folds_of(y, args.folds, 0)
    p_hog = np.zeros_like(p_cnn)
    for f in range(args.folds):
        held = fold == f
        clf = LogisticRegression(C=args.C, max_iter=500).fit(Xs[~held], y[~held])
        p_hog[held] = clf.predict_proba(Xs[held])
    print(f"{len(tr):,} training images; HOG + {args.folds}-fold logistic regression {time.perf_counter() - t0:.0f} s")
    usable = crowd_mod.usable(tr)
    cl = tr["crowd_label"].fillna("").to_numpy(object)
    notmaj = cl != tr["label"].to_numpy(object)
    crowd_y = np.array([classes.index(c) if c in classes else -1 for c in cl])
    ks = (500, 1000, 2000, 4500, 9000)
    sources = {"cnn folds (stored)": p_cnn, "hog logistic regression": p_hog,
               "mean of cnn and hog": (p_cnn + p_hog) / 2, "cnn 2 : hog 1": (2 * p_cnn + p_hog) / 3}
    out = {}
    print(f"baseline: {notmaj[usable].mean() * 100:.1f}% of {int(usable.sum()):,} training images with usable votes have "
          "another crowd majority")
    print("| source | OOF acc. (given) | OOF acc. (crowd) | " + " | ".join(f"prec@{k:,}" for k in ks) + " |")
    print("|---|---:|---:|" + "---:|" * len(ks))
    for name, p in sources.items():
        p = np.clip(p, 1e-6, 1)
        p = p / p.sum(1, keepdims=True)
        q = get_label_quality_scores(y, p, method="self_confidence")
        rank = np.empty(len(y))
        rank[np.argsort(q, kind="stable")] = np.arange(1, len(y) + 1)
        rank[~usable] = np.nan
        prec = crowd_mod.precision_at(rank, notmaj, ks)
        acc_given = float((p.argmax(1) == y).mean())
        m = crowd_y >= 0
        acc_crowd = float((p.argmax(1)[m] == crowd_y[m]).mean())
        out[name] = {"oof_given": acc_given, "oof_crowd": acc_crowd, "precision": prec}
        print(f"| {name} | {acc_given * 100:.1f}% | {acc_crowd * 100:.1f}% | "
              + " | ".join(f"{prec[k] * 100:.1f}%" if prec[k] is not None else "—" for k in ks) + " |")
    if args.probe:
        out["probe"] = probe(args, sig, train, Xs_all, usable, notmaj)
    print(f"{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


def probe(args, sig, train, Xs_all, usable_tr, notmaj_tr) -> list[dict]:
    from sklearn.linear_model import LogisticRegression

    from fer_core.train.evaluate import paired_difference

    given = sig["label"].to_numpy(object)
    crowd = sig["crowd_label"].fillna("").to_numpy(object)
    classes = sorted(set(given[train]))
    test = (sig["split"].to_numpy() == "test") & np.isin(crowd, classes)
    y_test = crowd[test]
    tr_rows = np.flatnonzero(train)
    disputed = tr_rows[usable_tr & notmaj_tr]
    agreed = tr_rows[usable_tr & ~notmaj_tr]

    def fit(mask: np.ndarray) -> np.ndarray:
        clf = LogisticRegression(C=args.C, max_iter=500).fit(Xs_all[mask], given[mask])
        return clf.predict(Xs_all[test]) == y_test

    t = time.perf_counter()
    raw = fit(train)
    print(f"probe: raw {raw.mean() * 100:.2f}% on {int(test.sum()):,} FER+ Test images ({time.perf_counter() - t:.0f} s a fit); "
          f"{len(disputed):,} disputed and {len(agreed):,} undisputed training images")
    rows = []

    def row(n, prec, oks, what):
        diff = paired_difference(np.tile(raw, (len(oks), 1)), np.stack(oks))
        r = {"dropped": n, "precision": prec, "what": what, "ferplus": float(np.mean(oks)),
             "vs_raw": [diff["difference"], *diff["ci95"]]}
        rows.append(r)
        print(f"| {n:,} | {prec * 100:.0f}% | {what} | {r['ferplus'] * 100:.2f}% | "
              f"{r['vs_raw'][0] * 100:+.2f} ({r['vs_raw'][1] * 100:+.2f} to {r['vs_raw'][2] * 100:+.2f}) |", flush=True)

    print("| images dropped | precision | chosen by | FER+ Test | − raw (95% CI) |")
    print("|---:|---:|---|---:|---:|")
    # the product's ranking itself (cleanlab's self-confidence of the stored CNN folds: its ``label_quality``) and
    # cleanlab's other rankings of the same probabilities: the n most suspect training images dropped
    from cleanlab.rank import get_label_quality_scores

    given_tr = given[train]
    cls_tr = sorted(set(given_tr))
    y_tr = np.array([cls_tr.index(c) for c in given_tr])
    p_cnn = sig.loc[train, [f"p_{c}" for c in cls_tr]].to_numpy(np.float64)
    p_cnn = np.clip(p_cnn, 1e-6, 1)
    p_cnn /= p_cnn.sum(1, keepdims=True)
    scored = set(np.concatenate([disputed, agreed]))
    for method in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        q = get_label_quality_scores(y_tr, p_cnn, method=method)
        for n in (4500, 9000):
            drop = tr_rows[np.argsort(q, kind="stable")[:n]]
            mask = train.copy()
            mask[drop] = False
            hit = np.isin(drop, disputed).sum() / max(sum(i in scored for i in drop), 1)
            row(n, float(hit), [fit(mask)], f"CNN folds' ranking, {method}")
            if method == "self_confidence":
                # the same ranking's disputed picks only, against as many disputed images at random: are the
                # disputed images a model finds the ones worth dropping?
                mine = drop[np.isin(drop, disputed)]
                mask = train.copy()
                mask[mine] = False
                row(len(mine), 1.0, [fit(mask)], "its disputed picks only (an oracle filter on the ranking)")
                rng = np.random.default_rng(7)
                other = rng.choice(disputed, len(mine), replace=False)
                mask = train.copy()
                mask[other] = False
                row(len(mine), 1.0, [fit(mask)], "as many disputed images at random")
    if args.no_grid:
        return rows
    base = float(len(disputed) / (len(disputed) + len(agreed)))       # a drop at random
    for n in (4500, 9000):
        for prec in (base, 0.5, 0.63, 0.7, 0.8, 0.9, 1.0):
            oks = []
            for d in range(args.draws):
                rng = np.random.default_rng(1000 * d + int(prec * 100))
                k = min(int(round(n * prec)), len(disputed))
                drop = np.concatenate([rng.choice(disputed, k, replace=False), rng.choice(agreed, n - k, replace=False)])
                mask = train.copy()
                mask[drop] = False
                oks.append(fit(mask))
            row(n, prec, oks, "at random" + (" (no ranking)" if prec == base else " within disputed / undisputed"))
    return rows


if __name__ == "__main__":
    main()
