"""The original FER2013 CSV format: ``emotion,pixels,Usage`` (48×48 grayscale as 2,304 numbers).

Every row is validated. Good rows become lossless PNGs laid out like the Kaggle image archive
(``train|test/<emotion id>/<Usage>_<line>.png``), so the FER2013 folder reader reads them with
the same split protocol. Bad rows are reported by line number and column, never silently dropped.
Messages name the line, the column and what was expected, never the file's text (a path imported
from the server may not be a dataset at all).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from fer_core.errors import InvalidInput
from fer_core.progress import CancelToken, ProgressFn, check_cancel, emit
from fer_core.sources.labels import FER2013_IDS

USAGES = ("Training", "PublicTest", "PrivateTest")
N_PIXELS = 48 * 48


def _validate_row(row: list[str], cols: dict[str, int]) -> tuple[str, str, np.ndarray | None, int | None, str | None]:
    """Return (column, problem, pixels, emotion, usage); problem == "" when valid."""
    if len(row) < len(cols):
        return "row", f"{len(row)} fields (expected {len(cols)})", None, None, None
    if any("\ufffd" in c for c in row):
        return "row", "bytes that are not UTF-8 text (expected plain ASCII)", None, None, None
    emo_s = row[cols["emotion"]].strip()
    try:
        emo = int(emo_s)
    except ValueError:
        return "emotion", "not an integer (expected 0–6)", None, None, None
    if emo not in FER2013_IDS:
        return "emotion", f"unknown emotion id {emo} (expected 0–6)", None, None, None
    usage = row[cols["usage"]].strip()
    if usage not in USAGES:
        return "Usage", "unknown Usage (expected Training, PublicTest or PrivateTest)", None, None, None
    parts = row[cols["pixels"]].split()
    if len(parts) != N_PIXELS:
        return "pixels", f"{len(parts)} values (expected {N_PIXELS})", None, None, None
    try:
        px = np.array(parts, dtype=np.int32)
    except ValueError:
        at = next(i for i, p in enumerate(parts, 1) if not p.lstrip("-").isdigit())
        return "pixels", f"non-numeric value (value {at} of {N_PIXELS})", None, None, None
    if px.min() < 0 or px.max() > 255:
        v = int(px.min() if px.min() < 0 else px.max())
        return "pixels", f"value {v} out of range 0–255", None, None, None
    return "", "", px.astype(np.uint8).reshape(48, 48), emo, usage


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            n += chunk.count(b"\n")
    return max(n, 1)


def materialize_csv(csv_path: Path, target: Path, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None) -> list[dict]:
    """Write every valid row of ``csv_path`` as a PNG under ``target``; return the bad rows.

    Each bad row is ``{"path": "<file>:<line>", "reason": "line L, column C: problem", ...}``.
    Raises InvalidInput when the file is not in this format at all.
    """
    csv_path = Path(csv_path)
    expected = "Expected the original FER2013 format: a header line with the columns emotion, pixels and Usage."
    try:
        # not-UTF-8 bytes become U+FFFD and the rows holding them are reported, never a decoding traceback
        fh = open(csv_path, newline="", encoding="utf-8-sig", errors="replace")
        header = next(csv.reader([fh.readline(1 << 16)]), [])
    except csv.Error as exc:
        fh.close()
        raise InvalidInput(f"'{csv_path.name}' is not a fer2013 CSV: its first line is not a CSV header.",
                           expected) from exc
    except OSError as exc:
        raise InvalidInput(f"Cannot read '{csv_path.name}' ({exc.strerror or type(exc).__name__}).",
                           "Check that it is the fer2013.csv file and that it is readable.") from exc
    lower = [h.strip().lower() for h in header]
    cols = {}
    for want in ("emotion", "pixels", "usage"):
        if want not in lower:
            fh.close()
            # the column's name, never the header's text: the file may hold anything
            raise InvalidInput(f"'{csv_path.name}' is not a fer2013 CSV: it has no '{want}' column.", expected)
        cols[want] = lower.index(want)
    total_lines = _count_lines(csv_path)
    bad: list[dict] = []
    good = 0
    emit(progress, "import csv", 0, total_lines, "rows")
    with fh:
        reader = csv.reader(fh)
        line = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a field over the csv module's limit (128 KiB; a good row is ~9 KB)
                line = reader.line_num + 1
                why = "a field is too long" if "field larger" in str(exc) else "not a well-formed CSV row"
                bad.append({"path": f"{csv_path.name}:{line}", "reason": f"line {line}: {why}",
                            "split": "", "usage": "", "label_orig": ""})
                continue
            line = reader.line_num + 1  # +1: the header was read before the reader started
            if not row or all(not c.strip() for c in row):
                continue
            col, problem, px, emo, usage = _validate_row(row, cols)
            if problem:
                emo_s = row[cols["emotion"]].strip() if len(row) > cols["emotion"] else ""
                bad.append({"path": f"{csv_path.name}:{line}", "reason": f"line {line}, column {col}: {problem}",
                            "split": "", "usage": "", "label_orig": emo_s if emo_s.isdigit() else ""})
                continue
            folder = "train" if usage == "Training" else "test"
            out = target / folder / str(emo) / f"{usage}_{line:05d}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(out), px):
                raise OSError(f"could not write {out}")
            good += 1
            if good % 1000 == 0:
                check_cancel(cancel)
                emit(progress, "import csv", line, total_lines, "rows")
    emit(progress, "import csv", total_lines, total_lines, "rows")
    if good == 0 or len(bad) > good:
        first = "; ".join(b["reason"] for b in bad[:10])
        raise InvalidInput(f"'{csv_path.name}': {len(bad):,} bad rows and {good:,} good ones. First bad rows: {first}",
                           "Fix the file (each row: emotion 0–6, 2,304 pixel values 0–255, Usage) and import again.")
    return bad
