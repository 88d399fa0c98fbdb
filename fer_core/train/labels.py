"""Label errors: K-fold out-of-fold class probabilities for every training image, ranked by cleanlab.

Two sources, averaged (``bench/bench_labels.py`` measures each and the combinations on planted noise):

(a) the compact CNN trained on K−1 folds and applied (with flip TTA) to the held-out fold;
(b) two classifiers over the face embeddings of the ``embeddings`` signal (when computed), out of fold over
    the same folds: a logistic regression and a similarity-weighted kNN vote.

The three are averaged with equal weights: on FER2013 with 5% planted flips this ranked the flips best
(average precision 0.527, ROC AUC 0.914, vs 0.442 / 0.876 for the CNN alone and 0.489 / 0.889 for CNN +
logistic regression; bench/RESULTS.md).

cleanlab turns the averaged probabilities into ``label_quality`` (self-confidence: probability of the given
label), ``label_issue`` (``find_label_issues``, prune by noise rate) and the suggested label. Each fold's
probabilities are saved as soon as the fold finishes, keyed by everything that determines them, so a killed
run resumes at the next fold.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from fer_core import datasets, locks, store
from fer_core.errors import DatasetError, InvalidInput
from fer_core.fsutil import atomic_path
from fer_core.progress import CancelToken, ProgressFn, check_cancel, emit
from fer_core.signals.base import get_family
from fer_core.train import data as data_mod
from fer_core.train.presets import Preset

# The label-error CNN: the compact network at width 24 (~740 images/s on 2 cores vs ~470 at 32), few epochs, light augmentation (the folds must
# not memorise the noise they are looking for).
LABELS_PRESET = Preset("labels", width=24, epochs=7, batch_size=128, lr=2e-3, patience=None, augment="light")
SOURCES = ("cnn", "embeddings")


@dataclass
class LabelsConfig:
    folds: int = 4
    epochs: int = LABELS_PRESET.epochs
    width: int = LABELS_PRESET.width
    seed: int = 0
    sources: tuple[str, ...] = SOURCES
    embedding_c: float = 0.5   # inverse regularisation of the logistic regression

    def preset(self) -> Preset:
        from dataclasses import replace
        return replace(LABELS_PRESET, epochs=self.epochs, width=self.width)


def folds_of(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    fold = np.zeros(len(y), np.int64)
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, te) in enumerate(skf.split(np.zeros(len(y)), y)):
        fold[te] = i
    return fold


def fit_fold(x: np.ndarray, y: np.ndarray, n_classes: int, fold: np.ndarray, f: int, cfg: LabelsConfig,
             progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> np.ndarray:
    """Train on every fold but ``f``; the flip-TTA probabilities of fold ``f``'s images (one fold, any engine)."""
    import keras

    from fer_core.train.runner import fit, predict

    k = int(fold.max()) + 1
    held = fold == f
    model, _ = fit(x[~held], y[~held], n_classes, cfg.preset(), cfg.seed + f, None, progress, cancel,
                   stage=f"labels:fold {f + 1}/{k}")
    p = predict(model, x[held], tta=True)
    del model
    keras.backend.clear_session()
    return p


def cnn_oof(x: np.ndarray, y: np.ndarray, n_classes: int, fold: np.ndarray, cfg: LabelsConfig,
            cache_dir=None, key: str = "", progress: ProgressFn | None = None,
            cancel: CancelToken | None = None, engine: str = "local", address: str | None = None) -> np.ndarray:
    k = int(fold.max()) + 1
    probs = np.zeros((len(y), n_classes), np.float32)
    todo = []
    for f in range(k):
        path = None if cache_dir is None else cache_dir / f"fold-{f}-{key}.npy"
        if path is not None and path.exists():
            probs[fold == f] = np.load(path)
            emit(progress, "labels:folds", f + 1, k, "folds", message=f"fold {f + 1}/{k} (cached)")
        else:
            todo.append(f)
    finished = [k - len(todo)]

    def done(f: int, p: np.ndarray) -> None:   # saved as soon as it is finished: a killed run resumes at the next
        probs[fold == f] = p
        path = None if cache_dir is None else cache_dir / f"fold-{f}-{key}.npy"
        if path is not None:
            with atomic_path(path) as tmp:
                np.save(tmp, p)
        finished[0] += 1
        emit(progress, "labels:folds", finished[0], k, "folds", message=f"fold {f + 1}/{k} done")

    if engine == "ray" and todo:   # the folds as parallel Ray tasks (fer_core/ray_engine.py); cleanlab stays here
        from fer_core import ray_engine
        ray_engine.run_folds(fit_fold, x, y, n_classes, fold, todo, cfg, done, address=address, progress=progress,
                             cancel=cancel)
        return probs
    for f in todo:
        emit(progress, "labels:folds", finished[0], k, "folds", message=f"fold {f + 1}/{k}")
        done(f, fit_fold(x, y, n_classes, fold, f, cfg, progress, cancel))
    return probs


def embedding_oof(v: np.ndarray, y: np.ndarray, n_classes: int, fold: np.ndarray, c: float = 0.5) -> np.ndarray:
    """Out-of-fold probabilities of a multinomial logistic regression over L2-normalised embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    probs = np.zeros((len(y), n_classes), np.float32)
    for f in range(int(fold.max()) + 1):
        held = fold == f
        sc = StandardScaler().fit(v[~held])
        clf = LogisticRegression(C=c, max_iter=300)
        clf.fit(sc.transform(v[~held]), y[~held])
        p = np.zeros((held.sum(), n_classes), np.float32)
        p[:, clf.classes_] = clf.predict_proba(sc.transform(v[held]))
        probs[held] = p
    return probs


def knn_oof(v: np.ndarray, y: np.ndarray, n_classes: int, fold: np.ndarray, k: int = 25) -> np.ndarray:
    """Out-of-fold similarity-weighted kNN vote over the embeddings (faiss inner product)."""
    import faiss

    probs = np.zeros((len(y), n_classes), np.float32)
    vv = np.ascontiguousarray(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9), np.float32)
    for f in range(int(fold.max()) + 1):
        held = np.flatnonzero(fold == f)
        tr = np.flatnonzero(fold != f)
        index = faiss.IndexFlatIP(vv.shape[1])
        index.add(vv[tr])
        sims, nb = index.search(vv[held], k)
        w = np.exp(sims * 10)
        lab = y[tr][nb]
        p = np.zeros((len(held), n_classes), np.float64)
        for c in range(n_classes):
            p[:, c] = (w * (lab == c)).sum(1)
        probs[held] = (p / p.sum(1, keepdims=True)).astype(np.float32)
    return probs


def score(y: np.ndarray, probs: np.ndarray, classes: list[str], ids: np.ndarray) -> pd.DataFrame:
    """cleanlab scores → the family's columns (ranked, ties broken deliberately)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probs = np.clip(probs, 1e-6, 1.0)
    probs = probs / probs.sum(1, keepdims=True)
    q = get_label_quality_scores(y, probs, method="self_confidence")
    m = get_label_quality_scores(y, probs, method="normalized_margin")
    try:
        issue = find_label_issues(y, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    except ValueError:  # too few images of some class for cleanlab's noise-rate estimate
        issue = np.zeros(len(y), bool)
    other = probs.copy()
    other[np.arange(len(y)), y] = -1
    best_other = other.argmax(1)
    margin = other.max(1) - probs[np.arange(len(y)), y]
    sugg = np.where(probs.argmax(1) == y, y, best_other)
    order = np.lexsort((ids.astype(str), -margin, q))   # lowest quality first; then the larger margin; then id
    rank = np.empty(len(y), np.int64)
    rank[order] = np.arange(1, len(y) + 1)
    cls = np.array(classes, dtype=object)
    top = np.argsort(-probs, axis=1)[:, :3]
    top3 = [", ".join(f"{classes[j]} {probs[i, j]:.2f}" for j in row) for i, row in enumerate(top)]
    return pd.DataFrame({"id": ids, "label_quality": q.astype(np.float64), "label_margin": m.astype(np.float64),
                         "label_issue": issue.astype(bool),
                         "suggested_label": cls[sugg], "label_rank": rank, "label_top3": top3})


def _key(*parts) -> str:
    return hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


@locks.writes_dataset("label check")
def compute(name: str, cfg: LabelsConfig | None = None, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None, cache=None, engine: str | None = None, address: str | None = None
            ) -> dict:
    """Compute and store the label signals of dataset ``name``; returns a summary dict. ``engine``: "local"
    (default, ``$FER_ENGINE``) or "ray" (the CNN folds as parallel tasks on the cluster at ``address``)."""
    from fer_core.ray_engine import engine_of

    cfg = cfg or LabelsConfig()
    engine = engine_of(engine)
    bad = set(cfg.sources) - set(SOURCES)
    if bad or not cfg.sources:
        raise InvalidInput(f"Unknown label-error source(s): {sorted(bad)}.", "Use cnn and/or embeddings.")
    t0 = time.time()
    ds = datasets.load(name, cache)
    cat = ds.catalog.sort_values("id").reset_index(drop=True)
    tr = cat[cat["split"] == "train"].reset_index(drop=True)
    if len(tr) < cfg.folds * 20:
        raise DatasetError(f"'{name}' has only {len(tr)} training images: too few for {cfg.folds}-fold label checks.",
                           "Label errors need at least a few hundred training images.")
    classes = data_mod.class_order(tr["label"])
    y = np.array([classes.index(l) for l in tr["label"]], np.int64)
    if np.bincount(y).min() < cfg.folds:
        raise DatasetError("Some class has fewer training images than folds.", "Use fewer folds (--folds).")
    fold = folds_of(y, cfg.folds, cfg.seed)
    fdir = store.family_dir(ds, "labels")
    (fdir / "folds").mkdir(parents=True, exist_ok=True)
    parts, used = [], []
    if "cnn" in cfg.sources:
        ids_all, px = data_mod.pixels(ds, 48, progress, cancel)
        x = px[np.searchsorted(ids_all, tr["id"].to_numpy())]
        key = _key(ds.meta["catalog_hash"], asdict(cfg.preset()), cfg.seed, cfg.folds, get_family("labels").version)
        parts.append(cnn_oof(x, y, len(classes), fold, cfg, fdir / "folds", key, progress, cancel, engine, address))
        used.append("cnn")
    emb_note = ""
    if "embeddings" in cfg.sources:
        if store.family_status(name, cache)["embeddings"]["complete"]:
            from fer_core import embedmap

            eids, v = embedmap.vectors(name, cache)
            v = v[np.searchsorted(eids, tr["id"].to_numpy())]
            emit(progress, "labels:embeddings", 0, 2, "steps", message="logistic regression on face embeddings")
            parts.append(embedding_oof(v, y, len(classes), fold, cfg.embedding_c))
            used.append("emb-logreg")
            emit(progress, "labels:embeddings", 1, 2, "steps", message="kNN vote on face embeddings")
            parts.append(knn_oof(v, y, len(classes), fold))
            used.append("emb-knn")
            emit(progress, "labels:embeddings", 2, 2, "steps")
        else:
            emb_note = "face embeddings not computed: the CNN alone ranks label issues"
            if "cnn" not in cfg.sources:
                raise DatasetError(f"The embeddings of '{name}' are not computed.",
                                   f"Compute them first (`python -m fer_core scan {name} --signals embeddings`) or add the CNN source.")
    check_cancel(cancel)
    probs = np.mean(parts, axis=0)
    table = score(y, probs, classes, tr["id"].to_numpy())
    full = cat[["id"]].merge(table, on="id", how="left")
    full["label_issue"] = full["label_issue"].fillna(False).astype(bool)
    full["label_rank"] = full["label_rank"].fillna(0).astype(np.int64)
    for c in classes:  # the averaged probabilities, for the review queue and the A/B's relabel arm
        full[f"p_{c}"] = np.nan
        full.loc[full["id"].isin(tr["id"]), f"p_{c}"] = probs[:, classes.index(c)]
    oof_acc = float((probs.argmax(1) == y).mean())
    summary = {"sources": used, "config": asdict(cfg),
               "train_images": int(len(tr)), "oof_accuracy": oof_acc,
               "oof_accuracy_by_source": {s: float((p.argmax(1) == y).mean()) for s, p in zip(used, parts)},
               "cleanlab_issues": int(table["label_issue"].sum()), "seconds": round(time.time() - t0, 1), "note": emb_note}
    store.write_family_table(ds, "labels", full, summary)
    return json.loads((fdir / "meta.json").read_text())
