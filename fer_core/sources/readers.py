"""Readers: turn a dataset tree (already staged inside the store) into image records.

A reader never decodes images; it only decides, for each file, its split, usage and label. Decoding,
hashing and validation happen once, in :mod:`fer_core.catalog`.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from fer_core.sources.labels import FER2013_IDS, canonical_label

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".gif"}
# Files that datasets ship beside their images; listed in the import summary, never treated as images.
METADATA_EXTS = {".csv", ".lst", ".txt", ".json", ".md", ".xml", ".yaml", ".yml", ".xlsx", ".pdf",
                 ".html", ".py", ".ipynb", ".mat", ".pkl", ".npy", ".npz", ".h5"}
IGNORED_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
# The label files a reader reads (label CSVs such as RAF-DB's and fer2013.csv; ExpW's label.lst). A folder
# import copies images and these, nothing else.
LABEL_EXTS = {".csv", ".lst"}

SPLIT_NAMES = {
    "train": "train", "training": "train", "trainset": "train", "train_set": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val", "publictest": "val", "public_test": "val",
    "test": "test", "testing": "test", "testset": "test", "test_set": "test", "privatetest": "test",
    "private_test": "test",
}
# FER2013's original "Usage" values and the standard protocol's splits.
USAGE_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
_USAGE_RE = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)
_USAGE_CANON = {u.lower(): u for u in USAGE_SPLIT}


@dataclass
class Record:
    path: str            # POSIX path relative to the store's image root
    split: str           # train / val / test
    usage: str           # dataset's own usage name (FER2013: Training/PublicTest/PrivateTest)
    label_orig: str      # the dataset's own label (folder name, code or id)
    label: str | None    # canonical label, None if it could not be mapped
    problem: str = ""    # non-empty: the file goes to the rejected table with this reason


def walk_files(root: Path) -> Iterator[PurePosixPath]:
    """All files under ``root`` as sorted relative POSIX paths (hidden files and __MACOSX skipped)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for fn in sorted(filenames):
            if fn.startswith("."):
                continue
            rel = Path(dirpath, fn).relative_to(root)
            yield PurePosixPath(*rel.parts)


def classify_file(rel: PurePosixPath) -> str:
    """'image', 'metadata' or 'other'."""
    name = rel.name.lower()
    if name in IGNORED_NAMES:
        return "metadata"
    ext = rel.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in METADATA_EXTS:
        return "metadata"
    return "other"


def is_label_file(rel: PurePosixPath) -> bool:
    return rel.suffix.lower() in LABEL_EXTS


def split_of(dirs: tuple[str, ...]) -> tuple[str | None, str]:
    for d in dirs:
        key = d.strip().lower().replace("-", "_").replace(" ", "_")
        if key in SPLIT_NAMES:
            return SPLIT_NAMES[key], d
    return None, ""


def read_folders(root: Path, numeric_map: dict[int, str] | None = None,
                 usage_from_filename: bool = False, default_split: str = "train",
                 label_fn: Callable[[PurePosixPath], str | None] | None = None) -> Iterator[Record]:
    """Generic image-folder reader: ``[split/]label/*.img`` at any depth, label synonyms and numeric maps.

    The label is the deepest directory whose name maps to the canonical taxonomy (or what
    ``label_fn`` returns from the file path); the split is the first directory named like a split.
    With ``usage_from_filename`` (FER2013), ``Training_/PublicTest_/PrivateTest_`` prefixes set the
    usage and the split (PublicTest→val, PrivateTest→test).
    """
    for rel in walk_files(root):
        kind = classify_file(rel)
        if kind == "metadata":
            continue
        dirs = rel.parts[:-1]
        split, split_dir = split_of(dirs)
        usage = split_dir
        if usage_from_filename:
            m = _USAGE_RE.match(rel.name)
            if m:
                usage = _USAGE_CANON[m.group(1).lower()]
                split = USAGE_SPLIT[usage]
        split = split or default_split
        if label_fn is not None:
            label_orig = label_fn(rel) or ""
            label = canonical_label(label_orig, numeric_map) if label_orig else None
        else:
            label_orig, label = "", None
            for d in reversed(dirs):
                if SPLIT_NAMES.get(d.strip().lower()):
                    continue
                lab = canonical_label(d, numeric_map)
                if lab is not None:
                    label_orig, label = d, lab
                    break
            if label is None and dirs:
                label_orig = dirs[-1]
        problem = ""
        if kind == "other":
            problem = f"not an image file (extension '{rel.suffix or '(none)'}')"
        elif label is None:
            problem = (f"unknown label '{label_orig}'" if label_orig else "no label folder above this image")
        yield Record(str(rel), split, usage, label_orig, label, problem)


# ---- dataset-specific readers ---------------------------------------------------------------

def read_fer2013_folders(root: Path, **_) -> Iterator[Record]:
    return read_folders(root, numeric_map=FER2013_IDS, usage_from_filename=True)


_JAFFE_RE = re.compile(r"^[A-Z]{2}\.([A-Z]{2})\d*\.\d+", re.IGNORECASE)


def _jaffe_label(rel: PurePosixPath) -> str | None:
    m = _JAFFE_RE.match(rel.name)
    return m.group(1).upper() if m else None


def read_jaffe(root: Path, **_) -> Iterator[Record]:
    """JAFFE: ``KA.AN1.39.tiff`` — the two letters after the first dot are the expression code."""
    return read_folders(root, label_fn=_jaffe_label)


def read_generic(root: Path, numeric_map: dict[int, str] | None = None, **_) -> Iterator[Record]:
    return read_folders(root, numeric_map=numeric_map, usage_from_filename=True)


def read_label_csv(root: Path, numeric_map: dict[int, str] | None = None, **_) -> Iterator[Record]:
    """Images listed in a CSV beside them (``image,label`` style, e.g. RAF-DB's train_labels.csv).

    Falls back to folder labels for images the CSV does not list.
    """
    listed: dict[str, tuple[str, str]] = {}   # image file name -> (label, "<csv>:<line>")
    unreadable: list[Record] = []
    for rel in walk_files(root):
        if rel.suffix.lower() != ".csv":
            continue
        try:
            with open(root / rel, newline="", encoding="utf-8-sig", errors="replace") as fh:
                rows = list(csv.reader(fh))
        except (OSError, csv.Error) as exc:  # e.g. a field over the csv module's 128 KiB limit
            why = "a field is too long" if isinstance(exc, csv.Error) else (exc.strerror or "cannot read")
            unreadable.append(Record(str(rel), "train", "", "", None, f"label file not read ({why})"))
            continue
        if len(rows) < 2 or len(rows[0]) < 2:
            continue
        for n, row in enumerate(rows[1:], 2):
            if len(row) >= 2 and Path(row[0]).suffix.lower() in IMAGE_EXTS:
                listed[Path(row[0]).name] = (row[1].strip()[:32], f"{rel.name}:{n}")
    yield from unreadable
    for rec in read_folders(root, numeric_map=numeric_map):
        name = PurePosixPath(rec.path).name
        if name in listed and (rec.label is None or rec.problem.startswith("unknown label")
                               or rec.problem.startswith("no label")):
            value, where = listed[name]
            lab = canonical_label(value, numeric_map)
            rec.label_orig, rec.label = value, lab
            # the reason names where the label is, never the file's text (see label_orig for the value)
            rec.problem = "" if lab else f"unknown label in {where}"
        yield rec


READERS: dict[str, Callable[..., Iterator[Record]]] = {
    "fer2013_folders": read_fer2013_folders,
    "folders": read_generic,
    "jaffe": read_jaffe,
    "label_csv": read_label_csv,
}
