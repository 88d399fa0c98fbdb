"""Composite many thumbnails into one image (one ``st.image`` call draws 1,000 thumbnails in ~1 s).

``montage`` lays tiles out in a grid with optional coloured borders (kept/rejected) and a short
caption per tile; ``montage_rows`` draws one titled row per group (e.g. samples per label).
The returned ``Layout`` maps a click position back to the tile index.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

COLORS = {"keep": (46, 160, 67), "reject": (214, 39, 40), "review": (255, 159, 28), "none": (60, 60, 60),
          "override": (31, 119, 180)}


@dataclass
class Layout:
    tile: int
    pad: int
    ncols: int
    n: int
    top: int = 0


def load_gray_or_color(path: str | Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _tile(img: np.ndarray | None, size: int) -> np.ndarray:
    if img is None:
        t = np.full((size, size, 3), 40, np.uint8)
        cv2.line(t, (0, 0), (size - 1, size - 1), (200, 0, 0), 1)
        return t
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    h, w = img.shape[:2]
    s = size / max(h, w)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST if s >= 2 else cv2.INTER_LINEAR
    r = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
    t = np.zeros((size, size, 3), np.uint8)
    y0, x0 = (size - r.shape[0]) // 2, (size - r.shape[1]) // 2
    t[y0:y0 + r.shape[0], x0:x0 + r.shape[1]] = r
    return t


def _fit(txt: str, width: int, scale: float) -> tuple[str, float]:
    """The largest font scale (down to 0.25) at which ``txt`` fits ``width``; text is cut only if even that
    is too wide (about 14 characters on a 64-px tile)."""
    while True:
        tw = cv2.getTextSize(txt, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
        if tw <= width or scale <= 0.25:
            break
        scale = max(0.25, scale - 0.02)
    while len(txt) > 1 and cv2.getTextSize(txt, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
        txt = txt[:-1]
    return txt, scale


def _caption(t: np.ndarray, text: str) -> None:
    """Draw a caption (one or two lines, separated by a newline) at the bottom of a tile, shrunk to fit."""
    tile = t.shape[1]
    lines = text.split("\n")[:2]
    fitted = [_fit(line, tile - 4, max(0.3, tile / 190)) for line in lines]
    scale = min(s for _, s in fitted)
    fitted = [_fit(line, tile - 4, scale)[0] for line, _ in fitted]
    th = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1]
    lh = th + 4
    tw = max(cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for line in fitted)
    cv2.rectangle(t, (0, tile - lh * len(fitted) - 1), (min(tile, tw + 4), tile), (0, 0, 0), -1)
    for k, line in enumerate(fitted):
        y = tile - 3 - lh * (len(fitted) - 1 - k)
        cv2.putText(t, line, (2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def thumbnail_uri(path: str | Path, size: int = 48) -> str | None:
    """A small JPEG data URI of an image (for image columns in tables); None if it cannot be read."""
    return _thumbnail_uri(str(path), size)


@lru_cache(maxsize=20_000)
def _thumbnail_uri(path: str, size: int) -> str | None:
    img = load_gray_or_color(path)
    if img is None:
        return None
    t = _tile(img, size)
    if (t[..., 0] == t[..., 1]).all() and (t[..., 1] == t[..., 2]).all():
        t = t[..., 0]
    ok, buf = cv2.imencode(".jpg", t if t.ndim == 2 else cv2.cvtColor(t, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None


def montage(images: Sequence[np.ndarray | str | Path | None], ncols: int = 20, tile: int = 64, pad: int = 2,
            borders: Sequence[str | None] | None = None, captions: Sequence[str] | None = None,
            border_px: int = 3, background=(255, 255, 255)) -> tuple[np.ndarray, Layout]:
    n = len(images)
    ncols = max(1, min(ncols, n)) if n else 1
    nrows = max(1, -(-n // ncols))
    step = tile + pad
    out = np.full((nrows * step - pad if n else tile, ncols * step - pad, 3), background, np.uint8)
    for i, im in enumerate(images):
        if im is None and borders is not None and borders[i] == "blank":
            continue
        if isinstance(im, (str, Path)):
            im = load_gray_or_color(im)
        t = _tile(im, tile)
        b = borders[i] if borders is not None else None
        if b:
            cv2.rectangle(t, (0, 0), (tile - 1, tile - 1), COLORS.get(b, COLORS["none"]), border_px)
        if captions is not None and captions[i]:
            _caption(t, str(captions[i]))
        r, c = divmod(i, ncols)
        out[r * step:r * step + tile, c * step:c * step + tile] = t
    return out, Layout(tile, pad, ncols, n)


def montage_rows(groups: dict[str, Sequence], ncols: int = 12, tile: int = 56, pad: int = 2,
                 label_width: int = 90) -> np.ndarray:
    """One row per group with its name on the left (e.g. sample images per label)."""
    rows = []
    for name, imgs in groups.items():
        strip, _ = montage(list(imgs)[:ncols], ncols=ncols, tile=tile, pad=pad)
        if strip.shape[1] < ncols * (tile + pad) - pad:
            w = ncols * (tile + pad) - pad
            padded = np.full((strip.shape[0], w, 3), 255, np.uint8)
            padded[:, :strip.shape[1]] = strip
            strip = padded
        lab = np.full((strip.shape[0], label_width, 3), 255, np.uint8)
        cv2.putText(lab, str(name)[:11], (4, strip.shape[0] // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (20, 20, 20), 1, cv2.LINE_AA)
        rows.append(np.hstack([lab, strip]))
        rows.append(np.full((pad * 2, rows[-1].shape[1], 3), 255, np.uint8))
    return np.vstack(rows) if rows else np.full((tile, tile, 3), 255, np.uint8)
