"""Face validity by MTCNN (the ``mtcnn`` package; weights in its wheel, runs on TensorFlow).

Offered because people know it; YuNet is the default. MTCNN needs the crop padded with a mean-grey border
(24 px) to find tight 48×48 faces at all; scored like YuNet: best confidence × min(area inside the crop /
(0.5 × crop), 1). On FER2013 it separates non-faces from faces far worse than YuNet (bench/RESULTS.md).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from fer_core.signals.base import ImageBatch, SignalColumn, SignalFamily

FAMILY = "faces_mtcnn"
VERSION = 1
PAD = 24
BATCH = 512
_F = FAMILY

COLUMNS = [
    SignalColumn("mtcnn_face_score", _F, "Face score (MTCNN)", "Best MTCNN confidence × how much of the crop its box "
                 "covers (capped at half): low for non-faces.", "low", "0–1", default_enabled=False, lower_bound=0,
                 upper_bound=1, review_k=0.0, default_rule="percentile", review_q=1.0, reject_q=0.3, review_cap=0.5,
                 reject_cap=0.2),
    SignalColumn("mtcnn_faces", _F, "Faces found (MTCNN)", "Number of MTCNN detections.", "none", "faces",
                 filterable=False),
]


def available() -> tuple[bool, str]:
    from fer_core.models import mtcnn_available

    return mtcnn_available()


_DET: dict = {}


def _detector():
    if "d" not in _DET:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from mtcnn import MTCNN

        _DET["d"] = MTCNN()
    return _DET["d"]


def padded(gray: np.ndarray, pad: int = PAD) -> np.ndarray:
    p = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=int(gray.mean()))
    return cv2.cvtColor(p, cv2.COLOR_GRAY2RGB)


def score(detections: list[dict], size: int, pad: int = PAD) -> tuple[float, int]:
    best = 0.0
    for f in detections:
        x, y, w, h = f["box"]
        x0, y0 = max(x - pad, 0), max(y - pad, 0)
        x1, y1 = min(x + w - pad, size), min(y + h - pad, size)
        area = max(0, x1 - x0) * max(0, y1 - y0) / float(size * size)
        best = max(best, float(f["confidence"]) * min(area / 0.5, 1.0))
    return best, len(detections)


def compute(batch: ImageBatch) -> dict[str, np.ndarray]:
    n = len(batch.ids)
    sc = np.full(n, np.nan)
    nf = np.full(n, np.nan)
    ok = np.flatnonzero(batch.ok)
    if len(ok):
        res = _detector().detect_faces([padded(batch.gray[i]) for i in ok])
        if len(ok) == 1 and isinstance(res, list) and res and isinstance(res[0], dict):
            res = [res]
        for i, r in zip(ok, res):
            sc[i], nf[i] = score(r, batch.gray.shape[1])
    return {"mtcnn_face_score": sc, "mtcnn_faces": nf}


class FacesMtcnn(SignalFamily):
    name, version, columns = FAMILY, VERSION, tuple(COLUMNS)
    batch_size = BATCH

    def available(self) -> tuple[bool, str]:
        return available()

    def compute(self, batch: ImageBatch) -> dict[str, np.ndarray]:
        return compute(batch)
