"""Identity clusters for subject-aware splits (issue 18), checked on the real CK+ where the subjects are known.

    python bench/bench_identity.py --cache DIR      # imports + embeds CK+ (and ExpW) into DIR when missing

Prints, per same-person threshold and clustering method: clusters, the largest, pairwise precision/recall of the
clusters against CK+'s named subjects, and how many real subjects a split by those clusters puts in two splits
(seed 0, 0.8/0.1/0.1; ungrouped for comparison). Then the identity split of the ExpW sample (no subjects named).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from _common import ROOT, machine


def _ensure(name: str, zip_name: str, cache: str) -> None:
    from fer_core import datasets, store

    if not datasets.exists(name, cache):
        datasets.import_dataset(ROOT.parent / "shared" / "datasets" / zip_name / "archive.zip", name, cache=cache)
    store.scan(name, signals=("faces", "embeddings"), workers=1, cache=cache)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.neighbors import kneighbors_graph

    from fer_core import datasets, embedmap, splits

    c = args.cache
    _ensure("ckplus", "ckplus", c)
    ds = datasets.load("ckplus", c)
    ids, v = embedmap.vectors("ckplus", c)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    cat = ds.catalog.set_index("id").reindex(ids)
    subj, rec, _ = splits.parse_subjects("ckplus", cat["path"].to_numpy())
    subj, rec = np.asarray(subj, object), np.asarray(rec, object)
    labels = cat["label"].to_numpy()
    n = len(ids)
    iu = np.triu_indices(n, 1)
    sim = (v @ v.T)[iu]
    same = (subj[:, None] == subj[None, :])[iu]
    same_rec = (rec[:, None] == rec[None, :])[iu]
    print(f"CK+: {n} images, {len(set(subj))} subjects, {int(same.sum()):,} same-subject pairs of {len(sim):,}")
    for q in (0.05, 0.25, 0.5):
        print(f"  cosine, same subject / other sequence q{q:.2f} {np.quantile(sim[same & ~same_rec], q):.3f}; "
              f"different subjects q{1 - q:.2f} {np.quantile(sim[~same], 1 - q):.3f}")
    print(f"  different subjects: q0.999 {np.quantile(sim[~same], 0.999):.3f}, max {sim[~same].max():.3f}")

    def score(lab):
        sl = (lab[:, None] == lab[None, :])[iu]
        tp = int((sl & same).sum())
        sp = splits.greedy_assign(lab, labels, (0.8, 0.1, 0.1), 0)
        straddle = int((pd.DataFrame({"s": subj, "sp": sp}).groupby("s")["sp"].nunique() > 1).sum())
        return (len(np.unique(lab)), int(np.bincount(pd.factorize(lab)[0]).max()), tp / max(int(sl.sum()), 1),
                tp / int(same.sum()), straddle)

    print("| threshold | method | clusters | largest | pair precision | pair recall | real subjects in two splits |")
    print("|---|---|---|---|---|---|---|")
    s_full = v @ v.T
    z = linkage(v, method="average", metric="cosine")
    for thr in (0.3, 0.363, 0.4, 0.45, 0.5, 0.6):
        a, b = np.nonzero(np.triu(s_full >= thr, 1))
        _, cc = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
        rows = [("single linkage (components)", cc), ("**average linkage** (adopted)", fcluster(z, 1 - thr, "distance"))]
        for k in (10, 30):
            g = kneighbors_graph(v, k, metric="cosine", include_self=False)
            m = AgglomerativeClustering(n_clusters=None, distance_threshold=1 - thr, metric="cosine",
                                        linkage="average", connectivity=g).fit(v)
            rows.append((f"average, kNN-{k} connectivity (sklearn)", m.labels_))
        for name, lab in rows:
            k_, big, p, r, st = score(np.asarray(lab))
            print(f"| {thr:.3f} | {name} | {k_} | {big} | {p:.3f} | {r:.3f} | {st} |")
    print(f"| — | no grouping | {n} | 1 | — | 0 | {score(np.arange(n))[4]} |")
    for thr in (0.363, 0.45):
        lab = splits.cluster_identities(v, thr)
        per_seed = []
        for seed in range(10):
            sp = splits.greedy_assign(lab, labels, (0.8, 0.1, 0.1), seed)
            per_seed.append(int((pd.DataFrame({"s": subj, "sp": sp}).groupby("s")["sp"].nunique() > 1).sum()))
        print(f"average linkage at {thr}: real subjects in two splits over seeds 0-9: {per_seed} (mean "
              f"{np.mean(per_seed):.1f} of {len(set(subj))})")
    t0 = time.time()
    splits.cluster_identities(v)
    print(f"cluster_identities on {n} CK+ faces: {time.time() - t0:.2f} s")

    _ensure("expw", "expw", c)
    ds = datasets.load("expw", c)
    t0 = time.time()
    names, info = splits.identity_groups(ds, np.sort(ds.catalog["id"].to_numpy()), cache=c)
    print(f"ExpW sample ({len(names):,} faces): {info} in {time.time() - t0:.2f} s")
    sizes = pd.Series(names).value_counts()
    print(f"  cluster sizes: {dict(sizes.value_counts().sort_index())}")


if __name__ == "__main__":
    main()
