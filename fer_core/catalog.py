"""The image table of one dataset: one row per image, stable id, split, usage, labels and geometry.

Columns of ``catalog.parquet``:
  id            stable id: 16 hex chars of BLAKE2b over the file bytes; byte-identical files (FER2013
                has 1,516 groups of them) get ``-1``, ``-2``... in path order, so ids stay unique and
                re-importing the same files gives the same ids.
  content_hash  32 hex chars of BLAKE2b over the file bytes (shared by byte-identical files)
  path          POSIX path inside the dataset store's image root
  dataset, split (train/val/test), usage, label (canonical), label_orig, width, height, channels,
  format, bytes

Files that cannot be used go to ``rejected.parquet`` (path, reason, split, usage, label_orig).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from fer_core.config import DEFAULT_LIMITS, ImportLimits
from fer_core.progress import CancelToken, ProgressFn, check_cancel, emit
from fer_core.sources.readers import Record

CATALOG_COLUMNS = ["id", "content_hash", "path", "dataset", "split", "usage", "label", "label_orig",
                   "width", "height", "channels", "format", "bytes"]
REJECTED_COLUMNS = ["path", "reason", "split", "usage", "label_orig"]
SPLITS = ("train", "val", "test")

_MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "RGB": 3, "RGBA": 4, "LA": 2, "I": 1, "I;16": 1, "F": 1,
                  "CMYK": 4, "YCbCr": 3}


def inspect_image(data: bytes, limits: ImportLimits = DEFAULT_LIMITS) -> tuple[dict | None, str]:
    """Decode ``data`` fully; return (geometry, "") or (None, reason)."""
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        return None, "zero-size file"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w < limits.min_side or h < limits.min_side:
                return None, f"absurd dimensions {w}×{h} (smaller than {limits.min_side} px)"
            if w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
                return None, f"absurd dimensions {w}×{h} (limit {limits.max_side} px a side)"
            im.load()  # raises on truncated / corrupt data
            fmt = (im.format or "").lower()
            mode = im.mode
    except UnidentifiedImageError:
        return None, "not an image (format not recognised)"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, "absurd dimensions (decompression bomb guard)"
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            return None, "truncated image"
        return None, f"corrupt image ({msg[:80]})"
    if fmt == "jpeg" and data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        # PIL tolerates some JPEGs cut just before the end-of-image marker.
        return None, "truncated image (JPEG end-of-image marker missing)"
    return {"width": w, "height": h, "channels": _MODE_CHANNELS.get(mode, 3), "format": fmt}, ""


def inspect_bytes(data: bytes, limits: ImportLimits = DEFAULT_LIMITS):
    """(geometry or None, reason, content hash, size) of one file's bytes."""
    geo, reason = inspect_image(data, limits)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return geo, reason, digest, len(data)


class Inspector:
    """Inspects files as they stream in (during extraction or copy), on a small thread pool."""

    def __init__(self, limits: ImportLimits = DEFAULT_LIMITS, workers: int = 2):
        self.limits = limits
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.futures: dict = {}

    def __call__(self, rel: str, data: bytes) -> None:
        self.futures[rel] = self.pool.submit(inspect_bytes, data, self.limits)

    def results(self) -> dict:
        out = {rel: f.result() for rel, f in self.futures.items()}
        self.pool.shutdown()
        return out


def _inspect_file(root: Path, rec: Record, limits: ImportLimits):
    return inspect_bytes((root / rec.path).read_bytes(), limits)


def build_catalog(root: Path, records: list[Record], dataset: str, limits: ImportLimits = DEFAULT_LIMITS,
                  progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                  workers: int = 4, inspected: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hash and validate every record's file; return (catalog, rejected).

    ``inspected`` holds results already computed while the files were written (see Inspector).
    """
    inspected = inspected or {}
    rows, rejected = [], []
    todo = []
    for rec in records:
        if rec.problem:
            rejected.append({"path": rec.path, "reason": rec.problem, "split": rec.split,
                             "usage": rec.usage, "label_orig": rec.label_orig})
        else:
            todo.append(rec)
    total = len(todo)
    emit(progress, "catalog", 0, total, "images")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunk = 2000
        for start in range(0, total, chunk):
            check_cancel(cancel)
            part = todo[start:start + chunk]
            for rec, (geo, reason, digest, nbytes) in zip(
                    part, pool.map(lambda r: inspected.get(r.path) or _inspect_file(root, r, limits), part)):
                if geo is None:
                    rejected.append({"path": rec.path, "reason": reason, "split": rec.split,
                                     "usage": rec.usage, "label_orig": rec.label_orig})
                    continue
                rows.append({"content_hash": digest, "path": rec.path, "dataset": dataset,
                             "split": rec.split, "usage": rec.usage, "label": rec.label,
                             "label_orig": rec.label_orig, **geo, "bytes": nbytes})
            emit(progress, "catalog", min(start + chunk, total), total, "images")
    cat = pd.DataFrame(rows, columns=[c for c in CATALOG_COLUMNS if c != "id"])
    cat = cat.sort_values("path", kind="stable").reset_index(drop=True)
    base = cat["content_hash"].str.slice(0, 16)
    dup_rank = cat.groupby("content_hash").cumcount()
    cat.insert(0, "id", np.where(dup_rank == 0, base, base + "-" + dup_rank.astype(str)))
    for col in ("width", "height", "channels", "bytes"):
        cat[col] = cat[col].astype("int64")
    rej = pd.DataFrame(rejected, columns=REJECTED_COLUMNS).sort_values("path").reset_index(drop=True)
    return cat, rej


def catalog_hash(cat: pd.DataFrame) -> str:
    """Hash of the catalog's identity columns; manifests and caches refer to it."""
    h = hashlib.blake2b(digest_size=16)
    for col in ("id", "path", "split", "usage", "label"):
        h.update("\x1f".join(cat[col].astype(str).tolist()).encode())
        h.update(b"\x1e")
    return h.hexdigest()


def counts(cat: pd.DataFrame, by: str = "split") -> pd.DataFrame:
    """Counts per ``by`` × label (labels in canonical order, only those present)."""
    from fer_core.sources.labels import CANONICAL

    t = pd.crosstab(cat[by], cat["label"])
    cols = [c for c in CANONICAL if c in t.columns] + [c for c in t.columns if c not in CANONICAL]
    t = t[cols]
    if by == "split":
        t = t.reindex([s for s in SPLITS if s in t.index] + [s for s in t.index if s not in SPLITS])
    t["total"] = t.sum(axis=1)
    return t
