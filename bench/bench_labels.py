"""Label errors on FER2013 with planted noise: time of the K-fold `labels` work and how well each source
(and combination) ranks the planted errors.

    python bench/bench_labels.py [--cache DIR] [--folds 4] [--epochs 7] [--rate 0.05]

Flips the labels of a known random 5% of the real training images (each to another class, uniformly),
runs exactly the engine's out-of-fold pieces (`fer_core.train.labels`: compact CNN per fold with flip TTA,
logistic regression and kNN over the face embeddings), and reports for each source and combination:
out-of-fold accuracy against the given labels, ROC AUC / average precision of "was flipped" from
cleanlab's label quality, and precision/recall of the top-k (k = number flipped, and 2k).
--cache DIR: a cache holding an imported FER2013 (`fer2013`) with embeddings computed (otherwise the
embedding sources are skipped).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from _common import FER_ZIP, machine, peak_rss_mib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=None)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="save the out-of-fold probabilities (.npz)")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    from sklearn.metrics import average_precision_score, roc_auc_score

    from fer_core import datasets, embedmap, store
    from fer_core.train import data as data_mod, labels as L

    cache = args.cache
    if cache is None:
        cache = tempfile.mkdtemp()
        datasets.import_dataset(FER_ZIP, "fer2013", cache=cache)
    ds = datasets.load("fer2013", cache)
    cat = ds.catalog.sort_values("id").reset_index(drop=True)
    tr = cat[cat["split"] == "train"].reset_index(drop=True)
    classes = data_mod.class_order(tr["label"])
    y0 = np.array([classes.index(l) for l in tr["label"]])
    rng = np.random.default_rng(1234)
    n = len(y0)
    flip = np.zeros(n, bool)
    flip[rng.choice(n, int(round(args.rate * n)), replace=False)] = True
    y = y0.copy()
    y[flip] = (y0[flip] + rng.integers(1, len(classes), flip.sum())) % len(classes)
    print(f"FER2013 train: {n:,} images; planted {flip.sum():,} flipped labels ({args.rate:.0%})", flush=True)
    fold = L.folds_of(y, args.folds, args.seed)
    cfg = L.LabelsConfig(folds=args.folds, epochs=args.epochs, seed=args.seed)
    t = time.perf_counter()
    ids_all, px = data_mod.pixels(ds, 48)
    x = px[np.searchsorted(ids_all, tr["id"].to_numpy())]
    t_px = time.perf_counter() - t
    t = time.perf_counter()
    sources = {"cnn": L.cnn_oof(x, y, len(classes), fold, cfg)}
    t_cnn = time.perf_counter() - t
    print(f"CNN folds ({args.folds} × {args.epochs} epochs, width {cfg.width}, {n - n // args.folds:,} images each): "
          f"{t_cnn:.0f} s ({args.folds * args.epochs * (n - n // args.folds) / t_cnn:.0f} training images/s incl. "
          f"prediction); pixel decode/cache {t_px:.1f} s", flush=True)
    if store.family_status("fer2013", cache)["embeddings"]["complete"]:
        eids, v = embedmap.vectors("fer2013", cache)
        v = v[np.searchsorted(eids, tr["id"].to_numpy())]
        t = time.perf_counter()
        sources["emb-logreg"] = L.embedding_oof(v, y, len(classes), fold)
        t_lr = time.perf_counter() - t
        t = time.perf_counter()
        sources["emb-knn"] = L.knn_oof(v, y, len(classes), fold)
        t_knn = time.perf_counter() - t
        print(f"embedding logistic regression OOF: {t_lr:.1f} s; embedding kNN OOF: {t_knn:.1f} s", flush=True)
    combos = dict(sources)
    if "emb-logreg" in sources:
        combos["cnn + emb-logreg"] = (sources["cnn"] + sources["emb-logreg"]) / 2
        combos["cnn + emb-knn"] = (sources["cnn"] + sources["emb-knn"]) / 2
        combos["cnn + logreg + knn (engine)"] = (sources["cnn"] + sources["emb-logreg"] + sources["emb-knn"]) / 3
        combos["0.7 cnn + 0.3 emb-logreg"] = 0.7 * sources["cnn"] + 0.3 * sources["emb-logreg"]
    k = int(flip.sum())
    print(f"\nranking the {k:,} planted flips among {n:,} images (base rate {k / n:.1%}):")
    print(f"  {'source':30s} OOF acc (given)  ROC AUC   AP     P@k    R@k    P@2k   R@2k   cleanlab flags (recall)")
    for name, p in combos.items():
        sc = L.score(y, p, classes, tr["id"].to_numpy())
        q = sc["label_quality"].to_numpy()
        order = np.argsort(sc["label_rank"].to_numpy())
        top, top2 = order[:k], order[:2 * k]
        iss = sc["label_issue"].to_numpy()
        print(f"  {name:30s} {(p.argmax(1) == y).mean():14.1%}  {roc_auc_score(flip, -q):7.3f}  "
              f"{average_precision_score(flip, -q):5.3f}  {flip[top].mean():5.2f}  {flip[top].sum() / k:5.2f}  "
              f"{flip[top2].mean():5.2f}  {flip[top2].sum() / k:5.2f}   {iss.sum():,} ({flip[iss].sum() / k:.2f})", flush=True)
    if args.save:
        np.savez_compressed(args.save, flip=flip, y=y, **{k.replace(" ", "_"): v for k, v in sources.items()})
    print(f"peak RSS {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
