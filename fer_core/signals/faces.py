"""Face validity: is this a usable face? YuNet (OpenCV Zoo, via cv2.FaceDetectorYN) on the crop.

Tight 48×48 crops defeat detectors tuned for photos. Measured on FER2013 (bench/bench_faces.py): YuNet on
the crop upscaled ×4 with no padding separates non-faces from faces best; the score is

    face_score = best confidence × min(area of the best box inside the original crop / (0.5 × crop area), 1)

so a confident detection of a small face in a corner (a whole-body shot, a thumbnail on a poster)
scores low too. Landmarks (eyes, nose, mouth corners) give pose proxies and drive the aligned
embedding. At FER2013's low non-face rate even a good cut has modest precision: the default recipe
sends low scores to review and auto-rejects only below a stricter cut.
"""

from __future__ import annotations

import cv2
import numpy as np

from fer_core.signals.base import ImageBatch, SignalColumn, SignalFamily

FAMILY = "faces"
VERSION = 1
UPSCALE = 4          # measured best preprocessing (see module doc)
PAD = 0
SCORE_FLOOR = 0.05   # YuNet's own threshold: keep weak detections so that scores stay continuous
_F = FAMILY
LANDMARK_COLS = [f"lm_{i}_{a}" for i in range(5) for a in ("x", "y")]

COLUMNS = [
    SignalColumn("face_score", _F, "Face score (YuNet)", "Best YuNet confidence × how much of the crop its box "
                 "covers (capped at half the crop): low for non-faces, placeholders, text, tiny or partial faces.",
                 "low", "0–1", lower_bound=0, upper_bound=1, review_k=0.0, default_rule="percentile",
                 review_q=1.0, reject_q=0.3, review_cap=0.5, reject_cap=0.2),
    SignalColumn("face_conf", _F, "Face confidence (YuNet)", "Best detection confidence on the ×4 upscaled crop.",
                 "low", "0–1", default_enabled=False, lower_bound=0, upper_bound=1),
    SignalColumn("face_area", _F, "Face box area (YuNet)", "Share of the crop covered by the best face box.", "low",
                 "share of crop", default_enabled=False, lower_bound=0, upper_bound=1),
    SignalColumn("face_n", _F, "Faces found (YuNet)", "Number of detections above 0.5 confidence: 0 = no face, "
                 ">1 = several faces in the crop.", "none", "faces", filterable=False),
    SignalColumn("face_roll", _F, "Head roll (YuNet landmarks)", "Tilt of the eye line, degrees (absolute).", "high",
                 "degrees", default_enabled=False, lower_bound=0, upper_bound=180),
    SignalColumn("face_yaw", _F, "Head turn proxy (YuNet landmarks)", "|nose offset from the eyes' midpoint| ÷ eye "
                 "distance: large for profiles.", "high", "ratio", default_enabled=False, lower_bound=0),
] + [SignalColumn(c, _F, f"Landmark {c}", "Landmark position (0–1, in the crop) for face alignment.", "none",
                  filterable=False) for c in LANDMARK_COLS]

_DET: dict = {}


def _detector(size: int):
    key = ("yunet", size)
    if key not in _DET:
        from fer_core.models import model_path

        cv2.setNumThreads(1)
        _DET[key] = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (size, size), SCORE_FLOOR, 0.3, 20)
    return _DET[key]


def prepare(gray: np.ndarray, upscale: int = UPSCALE, pad: int = PAD) -> np.ndarray:
    """BGR image the detector sees: the crop upscaled, optionally padded with its mean grey."""
    big = cv2.resize(gray, (gray.shape[1] * upscale, gray.shape[0] * upscale), interpolation=cv2.INTER_LINEAR)
    if pad:
        big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=int(gray.mean()))
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


def detect(gray: np.ndarray, upscale: int = UPSCALE, pad: int = PAD) -> dict:
    """Face signals of one grey crop."""
    img = prepare(gray, upscale, pad)
    h, w = img.shape[:2]
    det = _detector(h) if h == w else None
    if det is None:
        raise ValueError("square crops expected")
    det.setInputSize((w, h))
    _, faces = det.detect(img)
    inner = gray.shape[0] * upscale
    out = {"face_n": 0, "face_conf": 0.0, "face_area": 0.0, "face_score": 0.0, "face_roll": np.nan,
           "face_yaw": np.nan, **{c: np.nan for c in LANDMARK_COLS}}
    if faces is None or len(faces) == 0:
        return out
    conf = faces[:, 14]
    x0 = np.clip(faces[:, 0] - pad, 0, inner)
    y0 = np.clip(faces[:, 1] - pad, 0, inner)
    x1 = np.clip(faces[:, 0] + faces[:, 2] - pad, 0, inner)
    y1 = np.clip(faces[:, 1] + faces[:, 3] - pad, 0, inner)
    area = (x1 - x0) * (y1 - y0) / float(inner * inner)
    score = conf * np.minimum(area / 0.5, 1.0)
    b = int(np.argmax(score))
    f = faces[b]
    lm = (f[4:14].reshape(5, 2) - pad) / inner  # 0–1 in the crop
    re, le, nose = lm[0], lm[1], lm[2]
    eye_d = float(np.hypot(*(le - re)))
    roll = abs(float(np.degrees(np.arctan2(le[1] - re[1], le[0] - re[0]))))
    yaw = abs(float((nose[0] - (re[0] + le[0]) / 2) / eye_d)) if eye_d > 1e-6 else np.nan
    out.update({"face_n": int((conf >= 0.5).sum()), "face_conf": float(conf[b]), "face_area": float(area[b]),
                "face_score": float(score[b]), "face_roll": roll, "face_yaw": yaw})
    out.update({c: float(v) for c, v in zip(LANDMARK_COLS, lm.ravel())})
    return out


def compute(batch: ImageBatch) -> dict[str, np.ndarray]:
    rows = [detect(g) if ok else None for g, ok in zip(batch.gray, batch.ok)]
    cols = {}
    for c in [c.name for c in COLUMNS]:
        vals = [np.nan if r is None else r[c] for r in rows]
        cols[c] = np.asarray(vals, dtype=np.float64 if c != "face_n" else np.float64)
    return cols


class Faces(SignalFamily):
    name, version, columns = FAMILY, VERSION, tuple(COLUMNS)
    model = "yunet"   # available() checks it (packaged in the repository, SHA-256 verified)

    def compute(self, batch: ImageBatch) -> dict[str, np.ndarray]:
        return compute(batch)
