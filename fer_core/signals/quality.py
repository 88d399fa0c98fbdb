"""Quality signals: sharpness, brightness, contrast, edge density, entropy, blankness, clipping, size.

All metrics except size are computed on the grayscale image resized to WORK_SIZE×WORK_SIZE, so scores
are comparable across datasets of different resolutions. Whole batches are processed with NumPy at
once (the Laplacian, histograms, means); only Canny runs per image (OpenCV has no batched Canny).
"""

from __future__ import annotations

import cv2
import numpy as np

from fer_core.signals.base import ImageBatch, SignalColumn, SignalFamily

FAMILY = "quality"
VERSION = 1
_F = FAMILY
CANNY_LOW, CANNY_HIGH = 50, 150

COLUMNS = [
    SignalColumn("sharpness", _F, "Sharpness",
                 "Variance of the Laplacian (4-neighbour kernel, interior pixels) at 48×48: low means blurry "
                 "or flat.", "low", "Laplacian variance", transform="log", lower_bound=0, k=4.0),
    SignalColumn("brightness", _F, "Brightness", "Mean grey level: too dark or too bright is bad.",
                 "both", "grey level 0–255", lower_bound=0, upper_bound=255, k=3.0),
    SignalColumn("contrast", _F, "Contrast", "Standard deviation of grey levels: low means washed out.",
                 "low", "grey levels", transform="log", lower_bound=0),
    SignalColumn("edge_density", _F, "Edge density (occlusion proxy)",
                 f"Share of pixels on Canny edges ({CANNY_LOW}/{CANNY_HIGH}) at 48×48: high suggests clutter, "
                 "text, hands or glasses over the face.", "high", "share of pixels", lower_bound=0, upper_bound=1,
                 k=3.5),
    SignalColumn("entropy", _F, "Information (entropy)", "Shannon entropy of the grey-level histogram: low "
                 "means little information (flat, posterised or near-blank).", "low", "bits", lower_bound=0,
                 upper_bound=8, k=4.5),
    SignalColumn("uniformity", _F, "Blankness", "Largest share of pixels within a 16-level grey band: near 1 "
                 "for blank or near-constant frames.", "high", "share of pixels", lower_bound=0, upper_bound=1,
                 k=6.0),
    SignalColumn("dark_clip", _F, "Dark clipping", "Share of pixels at grey level < 8.", "high",
                 "share of pixels", default_enabled=False, lower_bound=0, upper_bound=1),
    SignalColumn("bright_clip", _F, "Bright clipping", "Share of pixels at grey level ≥ 248.", "high",
                 "share of pixels", default_enabled=False, lower_bound=0, upper_bound=1),
    SignalColumn("min_side", _F, "Image size", "Shorter side of the original image: too small to see "
                 "an expression.", "low", "pixels", lower_bound=0),
    SignalColumn("aspect_dev", _F, "Aspect ratio", "|ln(width / height)| of the original image: 0 for "
                 "square; large for odd crops.", "high", "|ln ratio|", lower_bound=0),
    SignalColumn("scan_error", _F, "Scan error", "Why the image could not be read at scan time (empty when "
                 "it could).", "none", filterable=False),
]


def compute(batch: ImageBatch) -> dict[str, np.ndarray]:
    x = batch.gray
    n, hgt, wid = x.shape
    npix = hgt * wid
    # Laplacian of the whole batch as one tall image; interior pixels of each tile only see their own
    # tile, so this equals the per-image interior Laplacian (2.5× faster than NumPy slicing).
    lap = cv2.Laplacian(x.reshape(n * hgt, wid), cv2.CV_32F, ksize=1).reshape(n, hgt, wid)[:, 1:-1, 1:-1]
    sharp = lap.reshape(n, -1).var(axis=1).astype(np.float64)
    hist = np.bincount((np.arange(n, dtype=np.int64)[:, None] * 256 + x.reshape(n, -1)).ravel(),
                       minlength=n * 256).reshape(n, 256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    bright = hist @ levels / npix
    contrast = np.sqrt(np.maximum(hist @ (levels ** 2) / npix - bright ** 2, 0.0))
    p = hist / npix
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    h16 = hist.reshape(n, 32, 8).sum(axis=2)
    unif = (h16[:, :-1] + h16[:, 1:]).max(axis=1) / npix
    dark = hist[:, :8].sum(axis=1) / npix
    brt = hist[:, 248:].sum(axis=1) / npix
    edges = np.empty(n, np.float64)
    for i in range(n):
        edges[i] = np.count_nonzero(cv2.Canny(x[i], CANNY_LOW, CANNY_HIGH)) / npix
    w = batch.width.astype(np.float64)
    h = batch.height.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = np.abs(np.log(w / h))
    out = {"sharpness": sharp, "brightness": bright, "contrast": contrast, "edge_density": edges, "entropy": ent,
           "uniformity": unif, "dark_clip": dark, "bright_clip": brt, "min_side": np.minimum(w, h),
           "aspect_dev": aspect}
    bad = ~batch.ok
    if bad.any():
        for k in out:
            out[k] = out[k].astype(np.float64)
            out[k][bad] = np.nan
    out["scan_error"] = np.array(batch.errors, dtype=object)
    return out


class Quality(SignalFamily):
    name, version, columns = FAMILY, VERSION, tuple(COLUMNS)
    error_column = "scan_error"   # the one family that says why an image could not be read

    def compute(self, batch: ImageBatch) -> dict[str, np.ndarray]:
        return compute(batch)
