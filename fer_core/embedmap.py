"""A 2-D map of the face embeddings (UMAP, or PCA on request), computed once and cached."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from fer_core import datasets, locks, store
from fer_core.errors import DatasetError
from fer_core.fsutil import atomic_path
from fer_core.progress import CancelToken, ProgressFn, atomic_write_json, emit
from fer_core.signals import embeddings as emb

METHODS = ("umap", "pca")


def vectors(name: str, cache=None) -> tuple[np.ndarray, np.ndarray]:
    """(ids sorted, (n, 128) float32 vectors): aligned embedding where there is one, else the whole crop."""
    ds = datasets.load(name, cache)
    if not store.family_status(name, cache)["embeddings"]["complete"]:
        raise DatasetError(f"The embeddings of '{name}' are not computed yet.",
                           f"Compute face signals first (Quality page, or `python -m fer_core scan {name} --signals faces,embeddings`).")
    t = store.load_family(ds, "embeddings")
    crop, al = emb.from_blob(t["emb_crop"]), emb.from_blob(t["emb_aligned"])
    v = np.where(np.all(np.isfinite(al), axis=1)[:, None], al, crop)
    v = np.nan_to_num(v)
    return t["id"].to_numpy(), v


def map_path(ds, method: str):
    return store.family_dir(ds, "embeddings") / f"map-{method}.parquet"


def load_map(name: str, method: str, cache=None) -> pd.DataFrame | None:
    ds = datasets.load(name, cache)
    p = map_path(ds, method)
    meta = p.with_suffix(".json")
    if not p.exists() or not meta.exists():
        return None
    if json.loads(meta.read_text()).get("catalog_hash") != ds.meta["catalog_hash"]:
        return None
    return pd.read_parquet(p)


@locks.writes_dataset("embedding map")
def compute_map(name: str, method: str = "umap", progress: ProgressFn | None = None,
                cancel: CancelToken | None = None, cache=None) -> pd.DataFrame:
    if method not in METHODS:
        raise DatasetError(f"Unknown map method '{method}'.", "Use umap or pca.")
    ds = datasets.load(name, cache)
    ids, v = vectors(name, cache)
    emit(progress, f"map:{method}", 0, 1, "maps", message=f"{len(ids):,} embeddings")
    t0 = time.time()
    x = v - v.mean(axis=0)
    if method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=0).fit_transform(x)
    else:
        import umap

        xy = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0).fit_transform(x)
    out = pd.DataFrame({"id": ids, "x": xy[:, 0].astype(np.float32), "y": xy[:, 1].astype(np.float32)})
    p = map_path(ds, method)
    with atomic_path(p) as tmp:
        out.to_parquet(tmp, index=False)
    atomic_write_json(p.with_suffix(".json"), {"catalog_hash": ds.meta["catalog_hash"], "method": method,
                                               "seconds": round(time.time() - t0, 1), "n": int(len(out))})
    emit(progress, f"map:{method}", 1, 1, "maps")
    return out


def unit_vectors(name: str, cache=None) -> tuple[np.ndarray, np.ndarray]:
    """(ids sorted, L2-normalised embeddings): cosine similarity is then a dot product."""
    ids, v = vectors(name, cache)
    return ids, v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def nearest(ids: np.ndarray, unit: np.ndarray, image_ids, k: int) -> dict[str, pd.DataFrame]:
    """The k most similar other images of each of ``image_ids`` (one matrix product for all of them), most
    similar first; an id without an embedding is left out. The one exact nearest-neighbour routine of the
    pages (the whole-dataset kNN of the scan is faiss: fer_core.signals.embeddings.knn)."""
    image_ids = np.asarray(image_ids, dtype=object)
    pos = np.searchsorted(ids, image_ids)
    ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == image_ids)
    out: dict[str, pd.DataFrame] = {}
    if not ok.any():
        return out
    k = min(k, len(ids) - 1)
    sims = unit[pos[ok]] @ unit.T
    sims[np.arange(len(sims)), pos[ok]] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    for r, iid in enumerate(image_ids[ok]):
        t = top[r][np.argsort(-sims[r, top[r]])]
        out[iid] = pd.DataFrame({"id": ids[t], "similarity": sims[r, t]})
    return out


def neighbours(name: str, image_id: str, k: int = 12, cache=None) -> pd.DataFrame:
    """The k most similar images to ``image_id`` (cosine of the embeddings), most similar first."""
    ids, unit = unit_vectors(name, cache)
    got = nearest(ids, unit, [image_id], k)
    if image_id not in got:
        raise DatasetError(f"No embedding for image {image_id}.", "Scan the embeddings again.")
    return got[image_id]
