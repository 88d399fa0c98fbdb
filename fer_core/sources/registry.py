"""Known facial-expression datasets: where to get them, how they are laid out, how labels map.

``verified`` says how much of the layout knowledge has been checked:
  "archive"   — read from the real Kaggle archive in this project's tests (FER2013 only);
  "fixtures"  — checked only on small fixtures built in the tests from the documented layout
                (layouts from public loaders of the Kaggle mirrors; see ``sources``).
Labels always go through :func:`fer_core.sources.labels.canonical_label`; numeric folders use the
dataset's own id order (RAF-DB's 1–7, AffectNet's 0–7 and FER2013's 0–6 all differ).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import cv2
import numpy as np

from fer_core.errors import InvalidInput
from fer_core.sources import collection, ferplus, readers
from fer_core.sources.labels import FER2013_IDS
from fer_core.sources.readers import Record, read_folders, walk_files

RAFDB_IDS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "angry", 7: "neutral"}
AFFECTNET_IDS = {0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "angry",
                 7: "contempt"}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    kaggle_slug: str | None
    layout: str
    reader: str
    numeric_map: dict[int, str] | None = None
    labels: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    verified: str = "fixtures"
    notes: str = ""
    licence: str = ""
    alt_slugs: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=())
    after_import: str | None = None   # "module:function" run on the imported dataset (under its lock)

    def read(self, root: Path, progress=None, cancel=None, options: dict | None = None) -> Iterator[Record]:
        """The layout's records. ``options``: reader choices (ExpW: ``crop_margin``); readers that take progress
        report it."""
        fn = READERS[self.reader]
        kw = dict(options or {})
        if self.reader == "expw":
            kw.update(progress=progress, cancel=cancel)
        elif kw:
            raise InvalidInput(f"The {self.name} layout takes no reader options ({', '.join(kw)}).",
                               "Leave them out (they apply to ExpW's face crops).")
        return fn(root, numeric_map=self.numeric_map, **kw)


# ---- readers that need more than the generic folder walk -------------------------------------

def _read_ckplus(root: Path, numeric_map=None) -> Iterator[Record]:
    """CK+48 on Kaggle ships the same folder twice (``CK+48/`` and ``ck/CK+48/``): read the first."""
    tops = sorted({p.parts[:p.parts.index("CK+48") + 1] for p in walk_files(root) if "CK+48" in p.parts},
                  key=lambda t: (len(t), t))
    if not tops:
        yield from read_folders(root, numeric_map)
        return
    keep = PurePosixPath(*tops[0])
    for rec in read_folders(root, numeric_map):
        if PurePosixPath(rec.path).is_relative_to(keep):
            yield rec


def _find_expw_label_file(root: Path) -> Path | None:
    for rel in walk_files(root):
        if rel.name == "label.lst":
            return root / Path(*rel.parts)
    return None


def _expw_crop(task) -> list[Record]:
    """Crop every face of one scene image (read once); ``task`` = (scene path, [(line, face_id, box, lab_id,
    label, out_rel, out_path)], margin). cv2 releases the GIL: scenes run in parallel threads."""
    src, faces, margin = task
    img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    out = []
    for lineno, where, (top, left, right, bottom), lab_id, label, out_rel, out_path in faces:
        if img is None:
            out.append(Record(where, "train", "", str(lab_id), label, f"line {lineno}: image unreadable"))
            continue
        h, w = img.shape[:2]
        if not (0 <= left < right <= w and 0 <= top < bottom <= h):
            inside = max(0, min(right, w) - max(left, 0)) * max(0, min(bottom, h) - max(top, 0))
            if inside < 0.5 * max(1, (right - left) * (bottom - top)):   # a box mostly outside the image
                out.append(Record(where, "train", "", str(lab_id), label,
                                  f"line {lineno}: face box ({left},{top})–({right},{bottom}) lies outside the "
                                  f"{w}×{h} image"))
                continue
        mh, mw = int(round(margin * (bottom - top))), int(round(margin * (right - left)))
        t, b = max(0, top - mh), min(h, bottom + mh)
        le, r = max(0, left - mw), min(w, right + mw)
        if b - t < 2 or r - le < 2:
            out.append(Record(where, "train", "", str(lab_id), label, f"line {lineno}: empty face box"))
            continue
        out_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out_path), np.ascontiguousarray(img[t:b, le:r]))
        out.append(Record(str(out_rel), "train", "", str(lab_id), label))
    return out


def _read_expw(root: Path, numeric_map=None, progress=None, cancel=None, crop_margin: float = 0.0,
               workers: int | None = None) -> Iterator[Record]:
    """ExpW: whole scene images plus ``label.lst`` (one face per line); faces are cropped into ``faces/``.

    Line format: ``image face_id top left right bottom confidence label`` with label 0–6 in the
    FER2013 order. Each scene image is read once for all its faces, scenes in parallel threads, with progress
    ("crop", faces). ``crop_margin``: the box grows by this share of its height/width on each side (0 = the box
    as given; recorded in the dataset's meta). A box mostly outside its image, a missing or unreadable image
    and a malformed line are listed as rejected.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from fer_core.progress import check_cancel, emit

    lst = _find_expw_label_file(root)
    if lst is None:
        raise InvalidInput("ExpW layout expected a label.lst file, and none was found.",
                           "Import the folder that holds label.lst and the extracted origin/ images.")
    if not 0 <= crop_margin <= 1:
        raise InvalidInput(f"Crop margin {crop_margin} is out of range.", "Give a share between 0 and 1 (e.g. 0.1).")
    images = {}
    for rel in walk_files(root):
        if readers.classify_file(rel) == "image" and not rel.parts[0] == "faces":
            images.setdefault(rel.name, root / Path(*rel.parts))
    if not images and any(r.name.startswith("origin.7z") for r in walk_files(root)):
        raise InvalidInput("ExpW's images are inside 7-Zip volumes (origin.7z.001 ...), which this app does not unpack.",
                           "Extract them with `7z x origin.7z.001`, then import the folder holding label.lst and origin/.")
    seen = set()
    scenes: dict[Path, list] = {}
    for lineno, line in enumerate(lst.read_text(errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"label.lst:{lineno}"
        if len(parts) != 8:
            yield Record(where, "train", "", "", None, f"line {lineno}: {len(parts)} fields (expected 8)")
            continue
        name, face_id = parts[0], parts[1]
        try:
            top, left, right, bottom = (int(float(v)) for v in parts[2:6])
            lab_id = int(parts[7])
        except ValueError:
            yield Record(where, "train", "", "", None, f"line {lineno}: non-numeric box or label")
            continue
        label = FER2013_IDS.get(lab_id)
        if (name, face_id) in seen:
            yield Record(where, "train", "", str(lab_id), label, f"line {lineno}: duplicate of an earlier row")
            continue
        seen.add((name, face_id))
        src = images.get(name)
        # name the image only when the line names one (the reason must never carry arbitrary file text)
        shown = f"'{name}'" if readers.classify_file(PurePosixPath(name)) == "image" and len(name) <= 80 \
            and name.isprintable() else "named on that line"
        out_rel = PurePosixPath("faces", str(lab_id), f"{Path(name).stem}_{face_id}.png")
        if label is None:
            yield Record(str(out_rel), "train", "", str(lab_id), None, f"line {lineno}: unknown label {lab_id}")
            continue
        if src is None:
            yield Record(where, "train", "", str(lab_id), label, f"line {lineno}: image {shown} not found")
            continue
        if bottom <= top or right <= left:
            yield Record(where, "train", "", str(lab_id), label, f"line {lineno}: empty face box")
            continue
        scenes.setdefault(src, []).append((lineno, where, (top, left, right, bottom), lab_id, label, out_rel,
                                           root / Path(*out_rel.parts)))
    total = sum(len(f) for f in scenes.values())
    emit(progress, "crop", 0, total, "faces", message=f"{len(scenes):,} scene images")
    done = 0
    tasks = [(src, faces, crop_margin) for src, faces in scenes.items()]
    with ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1)) as pool:
        for recs in pool.map(_expw_crop, tasks):        # in order: the records come out as the lines went in
            check_cancel(cancel)
            done += len(recs)
            emit(progress, "crop", done, total, "faces")
            yield from recs


READERS: dict[str, Callable[..., Iterator[Record]]] = {
    **readers.READERS,
    "ckplus": _read_ckplus,
    "expw": _read_expw,
    "ferplus_msft": ferplus.read_msft,
    "collection": collection.read_collection,
}

_FER_LAYOUT = ("train/<label>/Training_<id>.jpg; test/<label>/PublicTest_<id>.jpg and "
               "test/<label>/PrivateTest_<id>.jpg (labels angry disgust fear happy neutral sad surprise)")

SPECS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec(
        "fer2013", "FER2013 (Kaggle image folders)", "msambare/fer2013", _FER_LAYOUT, "fer2013_folders",
        numeric_map=FER2013_IDS, verified="archive",
        notes="35,887 grayscale 48×48 JPGs. Usage parsed from file names; split: Training→train, "
              "PublicTest→val, PrivateTest→test (the standard protocol).",
        licence="Research use (ICML 2013 challenge data).",
        sources=("Kaggle msambare/fer2013; checked against ../shared/datasets/fer2013/archive.zip",)),
    DatasetSpec(
        "fer2013-csv", "FER2013 (original fer2013.csv)", "deadskull7/fer2013",
        "fer2013.csv with columns emotion,pixels,Usage (2,304 grayscale values per row; emotion 0–6)",
        "fer2013_folders", numeric_map=FER2013_IDS, after_import="fer_core.crowd:write_csv_votes",
        notes="Rows become lossless PNGs; same split protocol as the image folders. Verified on a CSV "
              "built from the real images; the Kaggle mirror itself only from public loaders. With FER+'s "
              "fer2013new.csv beside fer2013.csv, each row's ten crowd votes are stored too (votes signals).",
        licence="Research use (ICML 2013 challenge data).",
        alt_slugs=("ashishpatel26/facial-expression-recognitionferchallenge",)),
    DatasetSpec(
        "ckplus", "CK+ (48×48 crops)", "shawon10/ckplus",
        "CK+48/{anger,contempt,disgust,fear,happy,sadness,surprise}/S010_004_00000017.png "
        "(the archive also repeats it under ck/CK+48/, read once); no neutral, no splits",
        "ckplus", labels=("angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"),
        notes="981 grayscale 48×48 PNGs, several frames per sequence (near duplicates by design). "
              "No official split: everything is 'train' until `split NAME --by subject` assigns one.",
        verified="archive", sources=("Kaggle shawon10/ckplus; checked against ../shared/datasets/ckplus/archive.zip",),
        licence="CK+ licence: non-commercial research; the Kaggle mirror is unofficial."),
    DatasetSpec(
        "rafdb", "RAF-DB basic (aligned 100×100)", "shuvoalok/raf-db-dataset",
        "DATASET/{train,test}/{1..7}/train_00001_aligned.jpg + train_labels.csv/test_labels.csv "
        "(1 surprise, 2 fear, 3 disgust, 4 happy, 5 sad, 6 angry, 7 neutral)",
        "label_csv", numeric_map=RAFDB_IDS,
        notes="12,271 train + 3,068 test RGB JPGs. Test has no separate validation split.",
        licence="RAF-DB terms: non-commercial research; the Kaggle mirror is unofficial.",
        alt_slugs=("nishchalchandel/raf-db-face-emotion-dataset",)),
    DatasetSpec(
        "jaffe", "JAFFE", "andrewmvd/japanese-female-facial-expression-dataset-jaffe",
        "flat folder of 256×256 grayscale TIFFs named like KA.AN1.39.tiff (AN anger, DI disgust, FE fear, "
        "HA happy, NE neutral, SA sad, SU surprise); labels read from the file name, not data.csv",
        "jaffe", notes="213 images of 10 subjects; no splits.",
        licence="JAFFE's terms forbid redistribution: obtain it from the authors (zenodo.org/record/3451524) "
                "and import the folder locally."),
    DatasetSpec(
        "expw", "ExpW (Expression in-the-Wild)", "shahzadabbas/expression-in-the-wild-expw-dataset",
        "origin/*.jpg scene images + label.lst lines 'image face_id top left right bottom confidence label' "
        "(label 0–6 in FER2013 order); faces are cropped at import. The Kaggle archive ships the images as "
        "7-Zip volumes origin.7z.001..: extract them first and import the folder.",
        "expw", numeric_map=FER2013_IDS, notes="≈91.8k face rows; no splits, no subject ids.", verified="archive",
        sources=("the official ExpW format; checked against a quarter of a public sample, "
                 "../shared/datasets/expw/archive.zip",),
        licence="Non-commercial research."),
    DatasetSpec(
        "affectnet", "AffectNet (Kaggle 96×96 mirror)", "noamsegal/affectnet-training-data",
        "{anger,contempt,disgust,fear,happy,neutral,sad,surprise}/image0000006.jpg + labels.csv "
        "(pth,label,relFCs); numeric folders, where present, use AffectNet's order 0 neutral … 7 contempt",
        "folders", numeric_map=AFFECTNET_IDS,
        labels=("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
        notes="29,042 RGB 96×96 images, no split. Labels from folders (labels.csv is a re-annotation).",
        licence="AffectNet is licensed by its authors for research; Kaggle mirrors are unofficial.",
        alt_slugs=("mstjebashazida/affectnet",)),
    DatasetSpec(
        "ferplus", "FER+ (Microsoft's FERPlus layout: FER2013 with ten crowd votes per image)", None,
        "[data/]FER2013{Train,Valid,Test}/fer<row>.png + a label.csv per folder (image, box, ten vote counts: "
        "neutral happiness surprise sadness anger disgust fear contempt unknown NF)",
        "ferplus_msft", labels=("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
        verified="archive", after_import="fer_core.crowd:write_own_votes",
        notes="35,710 grayscale 48×48 PNGs (lossless). Train→train, Valid (= FER2013 PublicTest)→val, Test (= "
              "PrivateTest)→test. Catalog label = the crowd majority; ties, unknown and not-a-face majorities are "
              "kept with the most-voted expression and set aside by the recipe and the evaluation (the votes "
              "signals say which). Images no annotator saw an expression in are listed as rejected. Same faces as "
              "FER2013: link the two (`python -m fer_core link fer2013 ferplus`).",
        licence="FER+ labels: MIT (microsoft/FERPlus); images as FER2013 (research use).",
        sources=("github microsoft/FERPlus generate_training_data.py; checked against "
                 "../shared/datasets/ferplus/archive.zip",)),
    DatasetSpec(
        "ferplus-folders", "FER+ (Kaggle majority-label folders)", "subhaditya/fer2013plus",
        "fer2013/{train,test}/{anger,contempt,disgust,fear,happiness,neutral,sadness,surprise}/*.png",
        "folders", labels=("angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"),
        notes="48×48 grayscale; majority labels of Microsoft's fer2013new.csv, without the votes. Same faces as "
              "FER2013.",
        licence="FER+ labels: MIT (microsoft/FERPlus); images as FER2013."),
    DatasetSpec(
        "collection", "Collection (several imported datasets merged; built by `collection build`)", None,
        "<member>/<split>/<label>/<member id>.png + index.csv (member, split, label, the member's label, why left "
        "out), written by fer_core.collections",
        "collection", labels=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt"),
        notes="Each member's kept images (its own recipe, splits and overrides) as size×size gray PNGs on one "
              "taxonomy; usage = the member. A copy found in two members is kept once (the test copy, else the first "
              "member's). Not imported by hand: `python -m fer_core collection create NAME --members a,b`."),
    DatasetSpec(
        "folders", "Image folder (generic)", None,
        "[train|val|test/]<label>/*.jpg|png… at any depth; label names and synonyms "
        "(anger/angry, happiness/happy, sadness/sad, surprised, fearful, disgusted, …)",
        "folders", labels=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt"),
        notes="Used for local imports that match no known layout. Numeric folder names need a known dataset."),
]}


def get_spec(name: str) -> DatasetSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise InvalidInput(f"Unknown dataset '{name}'.",
                           "Known: " + ", ".join(SPECS) + ". For your own folders use --spec folders.") from None


def by_slug(slug: str) -> DatasetSpec | None:
    for s in SPECS.values():
        if s.kaggle_slug == slug or slug in s.alt_slugs:
            return s
    return None


_FER_FILE = re.compile(r"^(Training|PublicTest|PrivateTest)_\d+\.", re.IGNORECASE)


def detect_spec(root: Path) -> DatasetSpec:
    """Guess the layout of a staged tree (local imports name no dataset)."""
    files = list(walk_files(root))
    if any(f.name == "label.lst" for f in files):
        return SPECS["expw"]
    if any(f.name == "label.csv" and len(f.parts) >= 2 and f.parts[-2] in ferplus.FOLDERS for f in files):
        return SPECS["ferplus"]
    imgs = [f for f in files if readers.classify_file(f) == "image"]
    if imgs and sum(bool(_FER_FILE.match(f.name)) for f in imgs) > 0.5 * len(imgs):
        return SPECS["fer2013"]
    if imgs and sum(bool(readers._JAFFE_RE.match(f.name)) for f in imgs) > 0.5 * len(imgs):
        return SPECS["jaffe"]
    if any("CK+48" in f.parts for f in imgs):
        return SPECS["ckplus"]
    if any(re.fullmatch(r"\w+_\d+_aligned\.jpg", f.name) for f in imgs[:200]):
        return SPECS["rafdb"]
    return SPECS["folders"]


def find_fer_csv(root: Path) -> Path | None:
    """A fer2013-format CSV inside a staged tree (zips such as deadskull7/fer2013 hold only that)."""
    for rel in walk_files(root):
        if rel.suffix.lower() != ".csv":
            continue
        p = root / Path(*rel.parts)
        try:
            with open(p, newline="", encoding="utf-8-sig", errors="replace") as fh:
                header = [h.strip().lower() for h in next(csv.reader([fh.readline(1 << 16)]), [])]
        except (OSError, csv.Error):
            continue
        if {"emotion", "pixels", "usage"} <= set(header):
            return p
    return None

