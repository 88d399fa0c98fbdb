"""Duplicate signals: exact (hash of decoded pixels), near (64-bit DCT perceptual hash, also of the
mirrored image and of the image shifted by one pixel each way) and the candidate pairs a recipe groups at
its own Hamming threshold.

pHash alone misses copies shifted by a pixel (a 1-px shift moves a 48×48 face's hash by ~5.5 bits on
average; only half stay within 4 bits). Each image's hash is therefore also taken after a 1-px shift
left/right/up/down ("probes"); a copy shifted by one pixel along an axis then matches a probe (measured on
real FER2013 faces re-encoded and brightened too: 100% within 4 bits; diagonal 1-px shifts ~85%). Larger
shifts and re-crops are left to the face-embedding signal.

A 64-bit hash of a small face is no proof of a copy, and near pairs are not transitive (A~B, B~C at 6 bits
can link two different people). Each candidate pair is therefore also checked on the pixels:
``pixel_corr`` is the best Pearson correlation of the fine detail of the two 24×24 thumbnails (the
thumbnail minus its Gaussian blur, σ 1.5 px) over shifts of up to ±1 px (±2 px at 48×48), mirrored for
mirrored pairs; it ignores brightness and contrast. Plain grey-level correlation does not separate faces
(two different centred faces correlate 0.85-0.9); the fine detail does. On FER2013: pairs within 2 bits,
median 0.88; 3-4 bits, 0.83; 9-12 bits (nearly all different photographs), median 0.33, 95th percentile
0.52. The recipe uses it to confirm copies linked only through another image (``fer_core.recipe.PIXEL_SAME``).

pHash is computed for a whole batch at once: the INTER_AREA resize to 32×32 and the 8×8 low-frequency
DCT are both linear, so they fold into one 8×48 matrix applied from both sides (a NumPy matmul instead of
a Python loop over cv2.dct; ~40× faster on FER2013). Candidate pairs up to ``PAIR_MAX`` bits apart come
from faiss' binary range search (SIMD popcount), not an O(n²) Python loop.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from fer_core.signals.base import WORK_SIZE, ImageBatch, SignalColumn, SignalFamily

FAMILY = "duplicates"
VERSION = 2  # 2: 24×24 thumbnails and the pixel check of candidate pairs
PAIR_MAX = 12  # candidate near-duplicate pairs are kept up to this Hamming distance (slider range)
PROBE_MAX = 4  # mirrored / shifted matches are kept up to this distance (multi-index hashing, fast)
SHIFTS = (("x+1", 1, 0), ("x-1", -1, 0), ("y+1", 0, 1), ("y-1", 0, -1))
THUMB = 24      # thumbnail side for the pixel check
_F = FAMILY

COLUMNS = [
    SignalColumn("pixel_hash", _F, "Pixel hash", "64-bit hash of the decoded pixels (exact duplicates share it).",
                 "none", filterable=False),
    SignalColumn("phash", _F, "Perceptual hash", "64-bit DCT hash of the 32×32 grey image (near duplicates are "
                 "a few bits apart).", "none", filterable=False),
    SignalColumn("phash_mirror", _F, "Perceptual hash (mirrored)", "pHash of the horizontally flipped image "
                 "(finds mirrored copies).", "none", filterable=False),
] + [SignalColumn(f"phash_{name}", _F, f"Perceptual hash (shifted {name})", f"pHash after a 1-pixel shift "
                  f"({name}); finds copies shifted by a pixel.", "none", filterable=False) for name, _, _ in SHIFTS] + [
    SignalColumn("thumb", _F, "Thumbnail", f"{THUMB}×{THUMB} grey thumbnail (bytes) for the pixel check of "
                 "candidate pairs.", "none", filterable=False)]


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    c = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    c[0] /= np.sqrt(2.0)
    return c


def _projection() -> np.ndarray:
    eye = np.eye(WORK_SIZE, dtype=np.float32)
    resize = cv2.resize(eye, (32, WORK_SIZE), interpolation=cv2.INTER_AREA).T  # (32, 48): rows = outputs
    return (_dct_matrix(32)[:8] @ resize).astype(np.float32)                    # (8, 48)


_M = _projection()
_BITS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def phash_batch(gray: np.ndarray) -> np.ndarray:
    """64-bit pHash per image of a (n, 48, 48) uint8 batch (bits: 8×8 low DCT > its median)."""
    x = gray.astype(np.float32)
    d = _M @ x @ _M.T                                   # (n, 8, 8)
    flat = d.reshape(len(d), 64)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return (bits.astype(np.uint64) * _BITS).sum(axis=1, dtype=np.uint64)


def shift1(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shift a (n, h, w) batch by one pixel (content moves by dx, dy), replicating the edge."""
    if dx == 1:
        x = np.concatenate([x[:, :, :1], x[:, :, :-1]], axis=2)
    elif dx == -1:
        x = np.concatenate([x[:, :, 1:], x[:, :, -1:]], axis=2)
    if dy == 1:
        x = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
    elif dy == -1:
        x = np.concatenate([x[:, 1:], x[:, -1:]], axis=1)
    return x


def compute(batch: ImageBatch) -> dict[str, np.ndarray]:
    out = {"pixel_hash": batch.pixel_hash.astype(np.uint64), "phash": phash_batch(batch.gray),
           "phash_mirror": phash_batch(batch.gray[:, :, ::-1])}
    for name, dx, dy in SHIFTS:
        out[f"phash_{name}"] = phash_batch(shift1(batch.gray, dx, dy))
    for k in out:
        if k != "pixel_hash":
            out[k][~batch.ok] = 0
    small = [cv2.resize(g, (THUMB, THUMB), interpolation=cv2.INTER_AREA) for g in batch.gray]
    out["thumb"] = np.array([t.tobytes() if ok else b"" for t, ok in zip(small, batch.ok)], dtype=object)
    return out


def _codes(h: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(h.astype(">u8").view(np.uint8).reshape(-1, 8))


def _mih_range(index_codes: np.ndarray, query_codes: np.ndarray, radius: int):
    """Binary range search with multi-index hashing: exact for radius ≤ 4 (5 substrings of 12 bits)."""
    import faiss

    if radius > 4:
        index = faiss.IndexBinaryFlat(64)
    else:
        index = faiss.IndexBinaryMultiHash(64, 5, 12)
        index.nflip = 0
    index.add(index_codes)
    return index.range_search(query_codes, radius + 1)


def candidate_pairs(ids: np.ndarray, pixel_hash: np.ndarray, phash: np.ndarray, probes: dict[str, np.ndarray],
                    ok: np.ndarray | None = None, max_distance: int = PAIR_MAX) -> pd.DataFrame:
    """All pairs (a < b by position) with equal pixels, pHash distance ≤ max_distance, or a mirrored /
    1-px-shifted probe within PROBE_MAX of the other's pHash.

    ``probes`` maps a method name ("mirror", "shift") to the probe hashes (one array, or a list of arrays).
    Columns: a, b (ids), distance (Hamming bits; 0 for exact), method ("exact", "phash", "mirror", "shift").
    """
    import faiss

    n = len(ids)
    ok = np.ones(n, bool) if ok is None else ok
    idx_ok = np.flatnonzero(ok)
    rows = []

    def collect(lims, dist, nn, method, ordered):
        qi = np.repeat(np.arange(len(idx_ok)), np.diff(lims).astype(np.int64))
        a, b = idx_ok[qi], idx_ok[nn]
        if ordered:
            keep = a < b
        else:  # probe(a)≈phash(b) is a pair whichever of a, b comes first
            keep = a != b
            a, b = np.minimum(a, b), np.maximum(a, b)
        rows.append(pd.DataFrame({"ia": a[keep], "ib": b[keep], "distance": dist[keep].astype(np.int16),
                                  "method": method}))

    if len(idx_ok) > 1:
        base = _codes(phash[idx_ok])
        index = faiss.IndexBinaryFlat(64)
        index.add(base)
        collect(*index.range_search(base, max_distance + 1), "phash", True)
        for method, arrays in probes.items():
            for arr in (arrays if isinstance(arrays, (list, tuple)) else [arrays]):
                collect(*_mih_range(base, _codes(arr[idx_ok]), PROBE_MAX), method, False)
    # exact duplicates even where pHash says otherwise (it never does, but be exact about "exact")
    ph = pd.Series(pixel_hash[idx_ok])
    dup = ph.duplicated(keep=False).to_numpy()
    if dup.any():
        sub = pd.DataFrame({"h": ph[dup].to_numpy(), "i": idx_ok[dup]})
        first = sub.groupby("h")["i"].transform("min").to_numpy()
        m = sub["i"].to_numpy() != first
        rows.append(pd.DataFrame({"ia": first[m], "ib": sub["i"].to_numpy()[m], "distance": np.int16(0),
                                  "method": "exact"}))
    if not rows:
        return pd.DataFrame({"a": pd.Series(dtype=str), "b": pd.Series(dtype=str),
                             "distance": pd.Series(dtype=np.int16), "method": pd.Series(dtype=str)})
    p = pd.concat(rows, ignore_index=True)
    p["exact"] = pixel_hash[p["ia"]] == pixel_hash[p["ib"]]
    p.loc[p["exact"], ["distance", "method"]] = [0, "exact"]
    # one row per pair: the smallest distance (direct beats mirror; exact beats both)
    order = {"exact": 0, "phash": 1, "shift": 2, "mirror": 3}
    p["_o"] = p["method"].map(order)
    p = p.sort_values(["ia", "ib", "distance", "_o"]).drop_duplicates(["ia", "ib"], keep="first")
    out = pd.DataFrame({"a": ids[p["ia"].to_numpy()], "b": ids[p["ib"].to_numpy()],
                        "distance": p["distance"].to_numpy(np.int16), "method": p["method"].to_numpy()})
    return out.reset_index(drop=True)


def pixel_corr(thumbs: np.ndarray, ia: np.ndarray, ib: np.ndarray, mirror: np.ndarray | None = None,
               batch: int = 4096) -> np.ndarray:
    """Best Pearson correlation of the fine detail of thumbnails ``ia`` and ``ib`` (rows of an (n, s, s) uint8
    array) over shifts of up to ±1 px (``mirror``: compare with ``ib`` flipped). Two flat images correlate 1,
    one flat image 0."""
    out = np.empty(len(ia), np.float32)
    s = thumbs.shape[1]
    detail = np.stack([t - cv2.GaussianBlur(t, (0, 0), 1.5) for t in thumbs.astype(np.float32)]) if len(thumbs) \
        else thumbs.astype(np.float32)
    for k in range(0, len(ia), batch):
        a = detail[ia[k:k + batch]]
        b = detail[ib[k:k + batch]]
        if mirror is not None:
            b = np.where(mirror[k:k + batch, None, None], b[:, :, ::-1], b)
        ac = a[:, 1:s - 1, 1:s - 1].reshape(len(a), -1)
        za = ac - ac.mean(1, keepdims=True)
        sa = np.sqrt((za * za).sum(1))
        best = np.full(len(a), -1.0, np.float32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                bc = b[:, 1 + dy:s - 1 + dy, 1 + dx:s - 1 + dx].reshape(len(b), -1)
                sb = np.sqrt(np.maximum((bc * bc).sum(1) - bc.sum(1) ** 2 / bc.shape[1], 0))
                c = np.einsum("ij,ij->i", za, bc) / np.maximum(sa * sb, 1e-6)
                best = np.maximum(best, np.where((sa < 1e-3) & (sb < 1e-3), 1.0, c))
        out[k:k + batch] = np.clip(best, -1, 1)
    return out


def _thumbs(col, rows: np.ndarray) -> np.ndarray:
    """(len(rows), THUMB, THUMB) uint8 from a thumbnail column (rows without one stay black)."""
    out = np.zeros((len(rows), THUMB, THUMB), np.uint8)
    values = col.to_numpy()
    for k, i in enumerate(rows):
        b = values[i]
        if b is not None and len(b) == THUMB * THUMB:
            out[k] = np.frombuffer(b, np.uint8).reshape(THUMB, THUMB)
    return out


def finalize(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Derived tables computed over the whole dataset once the per-image hashes are complete."""
    ok = (table["phash"].to_numpy() != 0) | (table["pixel_hash"].to_numpy() != 0)
    probes = {"mirror": table["phash_mirror"].to_numpy(np.uint64),
              "shift": [table[f"phash_{name}"].to_numpy(np.uint64) for name, _, _ in SHIFTS]}
    ids = table["id"].to_numpy()
    pairs = candidate_pairs(ids, table["pixel_hash"].to_numpy(np.uint64), table["phash"].to_numpy(np.uint64),
                            probes, ok)
    exact = (pairs["method"] == "exact").to_numpy()
    pairs["pixel_corr"] = np.where(exact, np.float32(1.0), np.float32(np.nan))
    if (~exact).any() and "thumb" in table:
        pos = pd.Index(ids)
        ia, ib = pos.get_indexer(pairs["a"][~exact]), pos.get_indexer(pairs["b"][~exact])
        rows = np.unique(np.concatenate([ia, ib]))
        pairs.loc[~exact, "pixel_corr"] = pixel_corr(_thumbs(table["thumb"], rows), np.searchsorted(rows, ia),
                                                     np.searchsorted(rows, ib),
                                                     (pairs["method"] == "mirror").to_numpy()[~exact])
    return {"pairs": pairs}


class Duplicates(SignalFamily):
    name, version, columns = FAMILY, VERSION, tuple(COLUMNS)
    load_exclude = ("thumb",)   # 24×24 thumbnails for the pixel check: stored, not loaded with the signals
    derived = ("pairs",)

    def compute(self, batch: ImageBatch) -> dict[str, np.ndarray]:
        return compute(batch)

    def finalize(self, table: pd.DataFrame, catalog: pd.DataFrame) -> dict[str, pd.DataFrame]:
        return finalize(table)
