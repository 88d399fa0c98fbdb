"""Face embeddings (SFace, offline) and what they find: near copies the pixel hash misses, cross-split
leakage, conflicting labels, class outliers, and possible same-person pairs across splits.

Two 128-d embeddings per image, L2-normalised, stored as float16:

- ``emb_crop``: the whole crop resized to 112 px. Finds the *same photo* re-cropped, re-contrasted or
  watermarked.
- ``emb_aligned``: the crop warped onto the ArcFace 112-px template from YuNet's five landmarks (the faces
  signal). Better for "who/what is this" questions: class outliers, same person. Missing where YuNet found
  no face (the crop embedding stands in).

The derived tables (computed once over the whole dataset, faiss inner-product search, never a Python
O(n²) loop): ``pairs`` (image pairs whose crop embeddings have cosine ≥ PAIR_MIN, for the recipe's
near-copy threshold), ``scores`` (per image: class-outlier distance, share of the k nearest neighbours with
another label, best similarity to another image), ``identity`` (nearest-neighbour pairs above IDENTITY_MIN, possibly the
same person; :func:`cross_split_pairs` keeps those across the split in use, to confirm by eye).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd

from fer_core.signals.base import ImageBatch, SignalColumn, SignalFamily
from fer_core.signals.faces import LANDMARK_COLS

FAMILY = "embeddings"
VERSION = 1
BATCH = 256
DIM = 128
PAIR_MIN = 0.75        # near-copy candidate pairs kept from this cosine up (the recipe threshold moves above)
IDENTITY_MIN = 0.45    # SFace's same-person cosine threshold is 0.363; pairs above this are worth a look
K = 10
_F = FAMILY
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)

COLUMNS = [
    SignalColumn("emb_crop", _F, "Embedding (whole crop)", "SFace 128-d embedding of the crop resized to 112 px.",
                 "none", filterable=False),
    SignalColumn("emb_aligned", _F, "Embedding (aligned)", "SFace embedding of the crop aligned to the ArcFace "
                 "template from YuNet's landmarks.", "none", filterable=False),
    SignalColumn("class_outlier", _F, "Outlier in its class", "Cosine distance of the (centred, aligned) embedding "
                 "to its label's robust centre (coordinate-wise median of the training images of that label).",
                 "high", "cosine distance", lower_bound=0, upper_bound=2, k=3.0, review_only=True),
    SignalColumn("knn_disagree", _F, "Neighbours with another label", f"Share of the {K} nearest neighbours "
                 "(aligned embeddings) that carry a different label.", "high", "share", lower_bound=0,
                 upper_bound=1, k=3.0, review_only=True),
    SignalColumn("nn_similarity", _F, "Most similar other image", "Highest cosine similarity of the crop embedding "
                 "to any other image (1 = a copy).", "none", "cosine", filterable=False),
]


def available() -> tuple[bool, str]:
    import importlib.util

    from fer_core.models import available as model_ok

    ok, why = model_ok("sface")
    if not ok:
        return ok, why
    for pkg in ("onnxruntime", "onnx", "faiss"):
        if importlib.util.find_spec(pkg) is None:
            return False, f"the '{pkg}' package is missing (pip install -r requirements.txt)"
    return True, ""


_SESSION: dict = {}


def _session():
    if "s" not in _SESSION:
        import onnxruntime as ort

        from fer_core.models import fp32_model

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(os.environ.get("FER_ORT_THREADS", "1"))
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        _SESSION["s"] = ort.InferenceSession(str(fp32_model("sface")), so, providers=["CPUExecutionProvider"])
    return _SESSION["s"]


# One image per onnxruntime call: 40.2 embeddings/s against 35.9 with 64 per call and 37.9 with 8 (one thread,
# median of 4 alternating runs, quiet machine, 2026-11-30; equal output: min cosine 0.9999998). Batching buys no
# GEMM efficiency for this small graph and costs cache misses (bench/bench_ray.py, bench/RESULTS.md, issue 19).
EMBED_CHUNK = 1


def embed_bgr112(images: list[np.ndarray], chunk: int = EMBED_CHUNK) -> np.ndarray:
    """L2-normalised SFace embeddings of 112×112 BGR images (float32, (n, 128))."""
    if not images:
        return np.zeros((0, DIM), np.float32)
    sess = _session()
    outs = []
    for s in range(0, len(images), chunk):
        blob = cv2.dnn.blobFromImages(images[s:s + chunk], 1.0, (112, 112), (0, 0, 0), True, False)
        outs.append(sess.run(None, {"data": blob})[0])
    v = np.concatenate(outs).astype(np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def crop_input(gray: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(gray, (112, 112), interpolation=cv2.INTER_LINEAR), cv2.COLOR_GRAY2BGR)


def aligned_input(gray: np.ndarray, landmarks01: np.ndarray) -> np.ndarray | None:
    """The crop warped so that its five landmarks (0–1 coordinates) land on the ArcFace template."""
    if landmarks01 is None or not np.all(np.isfinite(landmarks01)):
        return None
    scale = 4
    big = cv2.resize(gray, (gray.shape[1] * scale, gray.shape[0] * scale), interpolation=cv2.INTER_LINEAR)
    src = (np.asarray(landmarks01, np.float32).reshape(5, 2) * np.array([big.shape[1], big.shape[0]], np.float32))
    m, _ = cv2.estimateAffinePartial2D(src, ARCFACE_TEMPLATE, method=cv2.LMEDS)
    if m is None:
        return None
    warped = cv2.warpAffine(big, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.cvtColor(warped, cv2.COLOR_GRAY2BGR)


def to_blob(v: np.ndarray) -> np.ndarray:
    return np.array([r.astype(np.float16).tobytes() if np.all(np.isfinite(r)) else b"" for r in v], dtype=object)


def from_blob(col) -> np.ndarray:
    """(n, 128) float32 from a column of float16 bytes; rows without a vector are NaN."""
    out = np.full((len(col), DIM), np.nan, np.float32)
    for i, b in enumerate(col):
        if b is not None and len(b) == DIM * 2:
            out[i] = np.frombuffer(b, np.float16)
    return out


def compute(batch: ImageBatch) -> dict[str, np.ndarray]:
    n = len(batch.ids)
    lms = np.stack([batch.extra[c] for c in LANDMARK_COLS], axis=1) if batch.extra else np.full((n, 10), np.nan)
    crop = np.full((n, DIM), np.nan, np.float32)
    aligned = np.full((n, DIM), np.nan, np.float32)
    ok = np.flatnonzero(batch.ok)
    crop[ok] = embed_bgr112([crop_input(batch.gray[i]) for i in ok])
    al_idx, al_imgs = [], []
    for i in ok:
        a = aligned_input(batch.gray[i], lms[i])
        if a is not None:
            al_idx.append(i)
            al_imgs.append(a)
    if al_idx:
        aligned[al_idx] = embed_bgr112(al_imgs)
    return {"emb_crop": to_blob(crop), "emb_aligned": to_blob(aligned)}


# ---- whole-dataset derived tables ------------------------------------------------------------------

def knn(vectors: np.ndarray, k: int = K, exact_max: int = 200_000, nprobe: int = 32):
    """k nearest neighbours by cosine (vectors L2-normalised). Exact (faiss flat) up to ``exact_max``
    vectors, an inverted-file index beyond (scales to millions). Returns (similarities, indices), self
    excluded."""
    import faiss

    x = np.ascontiguousarray(vectors.astype(np.float32))
    n = len(x)
    if n <= 1:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    kk = min(k + 1, n)
    if n <= exact_max:
        index = faiss.IndexFlatIP(x.shape[1])
    else:
        # Inverted lists (k-means cells, ~4·√n of them, trained on a sample; each query scans nprobe cells;
        # recall@10 against exact search on FER2013's real embeddings: 0.83 at nprobe 32, 0.71 at 16).
        # On 2 cores this builds and searches 1M vectors in minutes; HNSW (M=32) did not finish the
        # 1M build + search within 10 minutes here (bench/bench_faces.py --knn-million, RESULTS.md).
        nlist = int(4 * np.sqrt(n))
        quant = faiss.IndexFlatIP(x.shape[1])
        index = faiss.IndexIVFFlat(quant, x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(x[rng.choice(n, min(n, 40 * nlist), replace=False)])
        index.nprobe = nprobe
    index.add(x)
    sims, idx = index.search(x, kk)
    # drop self (normally the first hit; with exact copies it may come later)
    out_s = np.zeros((n, kk - 1), np.float32)
    out_i = np.full((n, kk - 1), -1, np.int64)
    for r in range(n):  # noqa: PERF401 - per-row fix-up of where "self" landed; O(n·k)
        keep = idx[r] != r
        s_r, i_r = sims[r][keep][:kk - 1], idx[r][keep][:kk - 1]
        out_s[r, :len(s_r)] = s_r
        out_i[r, :len(i_r)] = i_r
    return out_s, out_i


def finalize(table: pd.DataFrame, signals: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    ids = table["id"].to_numpy()
    crop = from_blob(table["emb_crop"])
    aligned = from_blob(table["emb_aligned"])
    has_crop = np.all(np.isfinite(crop), axis=1)
    has_al = np.all(np.isfinite(aligned), axis=1)
    rep = np.where(has_al[:, None], aligned, crop)   # aligned where we have landmarks
    n = len(ids)
    # near copies from crop embeddings
    ci = np.flatnonzero(has_crop)
    sims, nn = knn(crop[ci])
    a = np.repeat(ci, sims.shape[1])
    b = ci[np.clip(nn.ravel(), 0, None)]
    s = sims.ravel()
    m = (nn.ravel() >= 0) & (s >= PAIR_MIN)
    a, b, s = a[m], b[m], s[m]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = pd.DataFrame({"ia": lo, "ib": hi, "similarity": s}).sort_values("similarity", ascending=False)
    pairs = pairs.drop_duplicates(["ia", "ib"]).sort_values(["ia", "ib"])
    pairs_out = pd.DataFrame({"a": ids[pairs["ia"].to_numpy()], "b": ids[pairs["ib"].to_numpy()],
                              "similarity": pairs["similarity"].to_numpy(np.float32), "method": "embedding"})
    nn_sim = np.full(n, np.nan, np.float32)
    nn_sim[ci] = sims[:, 0] if sims.shape[1] else np.nan
    scores = pd.DataFrame({"id": ids, "nn_similarity": nn_sim})
    identity = pd.DataFrame({"a": pd.Series(dtype=str), "b": pd.Series(dtype=str), "similarity": pd.Series(dtype=np.float32)})
    if signals is not None:
        sig = signals.set_index("id").reindex(ids)
        labels = sig["label"].to_numpy()
        split = sig["split"].to_numpy()
        ri = np.flatnonzero(np.all(np.isfinite(rep), axis=1))
        x = rep[ri] - rep[ri].mean(axis=0)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        outlier = np.full(n, np.nan, np.float32)
        for lab in pd.unique(labels[ri]):
            mem = labels[ri] == lab
            train = mem & (split[ri] == "train")
            centre = np.median(x[train if train.sum() >= 10 else mem], axis=0)
            centre /= max(np.linalg.norm(centre), 1e-12)
            outlier[ri[mem]] = 1.0 - x[mem] @ centre
        rs, rn = knn(rep[ri])
        valid = rn >= 0
        other = (labels[ri][np.clip(rn, 0, None)] != labels[ri][:, None]) & valid
        disagree = np.full(n, np.nan, np.float32)
        disagree[ri] = other.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        scores["class_outlier"] = outlier
        scores["knn_disagree"] = disagree
        # possible same person (nearest neighbours above IDENTITY_MIN), whatever the split: the split is the import's
        # here, and a split assigned later (fer_core.splits) changes which pairs cross — readers filter with
        # cross_split_pairs against the split they use
        qa = np.repeat(ri, rs.shape[1])
        qb = ri[np.clip(rn.ravel(), 0, None)]
        qs = rs.ravel()
        m = valid.ravel() & (qs >= IDENTITY_MIN) & (qa != qb)
        lo, hi = np.minimum(qa[m], qb[m]), np.maximum(qa[m], qb[m])
        idp = pd.DataFrame({"ia": lo, "ib": hi, "similarity": qs[m]}).drop_duplicates(["ia", "ib"])
        identity = pd.DataFrame({"a": ids[idp["ia"].to_numpy()], "b": ids[idp["ib"].to_numpy()],
                                 "similarity": idp["similarity"].to_numpy(np.float32)})
    return {"pairs": pairs_out, "scores": scores, "identity": identity}


def cross_split_pairs(identity: pd.DataFrame, ids: np.ndarray, split: np.ndarray) -> pd.DataFrame:
    """The rows of the ``identity`` table whose two images are in different splits, one of them train (``ids``
    sorted, ``split`` per id: the split in use, with an assigned split applied)."""
    if identity is None or not len(identity):
        return identity
    a, b = identity["a"].to_numpy(), identity["b"].to_numpy()
    pa = np.clip(np.searchsorted(ids, a), 0, len(ids) - 1)
    pb = np.clip(np.searchsorted(ids, b), 0, len(ids) - 1)
    ok = (ids[pa] == a) & (ids[pb] == b)          # both still in the catalog
    sa, sb = split[pa], split[pb]
    return identity[ok & (sa != sb) & ((sa == "train") | (sb == "train"))]


class Embeddings(SignalFamily):
    name, version, columns = FAMILY, VERSION, tuple(COLUMNS)
    depends = ("faces",)
    extra_columns = {"faces": tuple(LANDMARK_COLS)}   # alignment by YuNet's landmarks
    batch_size = BATCH
    load_exclude = ("emb_crop", "emb_aligned")          # 128-d vectors: read by embedmap.vectors when needed
    derived = ("pairs", "scores", "identity")
    model = "sface"

    def available(self) -> tuple[bool, str]:
        return available()

    def compute(self, batch: ImageBatch) -> dict[str, np.ndarray]:
        return compute(batch)

    def finalize(self, table: pd.DataFrame, catalog: pd.DataFrame) -> dict[str, pd.DataFrame]:
        return finalize(table, catalog)
