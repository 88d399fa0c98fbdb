"""Decoding images for the scan: each image read and decoded once into an :class:`ImageBatch` for every family
(used by the local engine's worker processes, fer_core.store, and by the Ray engine's actors, fer_core.ray_engine)."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from fer_core.signals.base import WORK_SIZE, ImageBatch


def _to_gray8(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1.0, float(np.iinfo(img.dtype).max)
                                                        if np.issubdtype(img.dtype, np.integer) else 1.0))
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        elif img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        else:
            img = img[:, :, 0]
    return img


def decode_batch(items: list[tuple[str, str, int, int]]) -> ImageBatch:
    """Read and decode (id, path, width, height) items into an ImageBatch."""
    n = len(items)
    gray = np.zeros((n, WORK_SIZE, WORK_SIZE), np.uint8)
    ok = np.zeros(n, bool)
    errors = [""] * n
    phash = np.zeros(n, np.uint64)
    w = np.zeros(n, np.int64)
    h = np.zeros(n, np.int64)
    for i, (_, path, width, height) in enumerate(items):
        w[i], h[i] = width, height
        try:
            with open(path, "rb") as fh:  # 40% faster than np.fromfile for small files
                data = np.frombuffer(fh.read(), np.uint8)
        except OSError as exc:
            errors[i] = f"cannot read file ({exc.strerror or exc})"
            continue
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if img is None:
            errors[i] = "cannot decode image"
            continue
        hh = hashlib.blake2b(np.ascontiguousarray(img).tobytes(), digest_size=8)
        hh.update(str(img.shape).encode())
        phash[i] = np.frombuffer(hh.digest(), np.uint64)[0]
        g = _to_gray8(img)
        if g.shape != (WORK_SIZE, WORK_SIZE):
            interp = cv2.INTER_AREA if min(g.shape) >= WORK_SIZE else cv2.INTER_LINEAR
            g = cv2.resize(g, (WORK_SIZE, WORK_SIZE), interpolation=interp)
        gray[i] = g
        ok[i] = True
    return ImageBatch([it[0] for it in items], gray, ok, errors, phash, w, h)
