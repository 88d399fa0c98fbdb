"""FER+ crowd votes (Microsoft's ``microsoft/FERPlus`` layout): parsing and what the votes say.

``data/FER2013{Train,Valid,Test}/label.csv`` rows are ``image, "(x, y, w, h)", neutral, happiness, surprise,
sadness, anger, disgust, fear, contempt, unknown, NF`` — ten annotators' votes per image (``fer2013new.csv``
carries the same votes per row of the original ``fer2013.csv``). Train → train, Valid (= FER2013 PublicTest) →
val, Test (= PrivateTest) → test.

What the votes give, per image (:func:`summarize`): the majority on the registry's taxonomy (contempt is a class
of its own), its share of the votes, and the cases that are not an expression label — ``not_face`` (NF is the
majority), ``unknown`` (unknown is the majority) and ``tie`` (two or more columns share the top count). Bad rows
(wrong column count, a vote that is not a non-negative integer, no votes at all) are listed with the reason and
never raise. Building block of the FER+ reader and the crowd-vote yardstick (issue 17); the import does not use
it yet.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd

VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# the registry's taxonomy (fer_core.sources.labels.CANONICAL) for the eight expression columns
EXPRESSION = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad", "anger": "angry",
              "disgust": "disgust", "fear": "fear", "contempt": "contempt"}
NOT_A_LABEL = {"unknown": "unknown", "NF": "not_face"}
FOLDERS = {"FER2013Train": ("train", "Training"), "FER2013Valid": ("val", "PublicTest"),
           "FER2013Test": ("test", "PrivateTest")}


def parse_label_csv(text: str, where: str = "label.csv") -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """(votes, problems): one row per valid line (``image`` + one integer column per :data:`VOTE_COLUMNS`), and
    ``(line or image, reason)`` for every line that cannot be used. A header line, if present, is skipped."""
    images, rows, problems = [], [], []
    for n, rec in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not rec or all(not c.strip() for c in rec):
            continue
        if n == 1 and rec[0].strip().lower() in ("image", "image name", "usage"):
            continue
        what = f"{where} line {n}" + (f" ({rec[0].strip()})" if rec[0].strip() else "")
        if len(rec) != 2 + len(VOTE_COLUMNS):
            problems.append((what, f"{len(rec)} columns, expected {2 + len(VOTE_COLUMNS)} (image, box, "
                                   f"{len(VOTE_COLUMNS)} vote counts)"))
            continue
        try:
            votes = [int(v) for v in rec[2:]]
        except ValueError:
            problems.append((what, "a vote count is not a whole number"))
            continue
        if min(votes) < 0:
            problems.append((what, "a vote count is negative"))
            continue
        if sum(votes) == 0:
            problems.append((what, "no votes"))
            continue
        images.append(rec[0].strip())
        rows.append(votes)
    arr = np.array(rows, np.int16).reshape(-1, len(VOTE_COLUMNS))
    df = pd.DataFrame(arr, columns=[f"votes_{c}" for c in VOTE_COLUMNS])
    df.insert(0, "image", images)
    dup = df["image"].duplicated(keep="first")
    for img in df.loc[dup, "image"]:
        problems.append((f"{where} ({img})", "the image is listed twice; the first line is used"))
    return df[~dup].reset_index(drop=True), problems


def summarize(votes: pd.DataFrame | np.ndarray) -> pd.DataFrame:
    """Per row of vote counts: ``crowd_label`` (the majority on the taxonomy, or ``not_face`` / ``unknown`` /
    ``tie``), ``crowd_share`` (the top count over all votes), ``crowd_votes`` (the number of votes)."""
    v = votes[[f"votes_{c}" for c in VOTE_COLUMNS]].to_numpy() if isinstance(votes, pd.DataFrame) else np.asarray(votes)
    v = v.astype(np.int64)
    total = v.sum(axis=1)
    top = v.max(axis=1)
    tie = (v == top[:, None]).sum(axis=1) > 1
    names = np.array([EXPRESSION.get(c) or NOT_A_LABEL[c] for c in VOTE_COLUMNS], dtype=object)
    label = names[v.argmax(axis=1)]
    label[tie] = "tie"
    return pd.DataFrame({"crowd_label": label, "crowd_share": top / np.maximum(total, 1), "crowd_votes": total})


# ---- the reader: Microsoft's layout, FER2013{Train,Valid,Test}/fer<row>.png + label.csv -------------------------

EXPRESSION_COLUMNS = tuple(EXPRESSION)            # vote columns that are a label of the taxonomy
_TAXONOMY_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")


def catalog_label(votes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(label, ok) per row: the catalog label is the crowd majority; where the majority is not an expression
    (a tie, unknown, not-a-face) it is the most-voted expression (ties broken in the taxonomy's order), and
    ``ok`` is False so the recipe and the evaluation can set the image aside. None where no annotator saw any
    expression at all (such images are listed as rejected at import)."""
    summ = summarize(votes)
    ok = ~summ["crowd_label"].isin(["tie", "unknown", "not_face"]).to_numpy()
    order = [c for t in _TAXONOMY_ORDER for c, e in EXPRESSION.items() if e == t]
    ev = votes[[f"votes_{c}" for c in order]].to_numpy().astype(np.int64)
    best = np.array([EXPRESSION[c] for c in order], dtype=object)[ev.argmax(axis=1)]   # first max = taxonomy order
    label = np.where(ok, summ["crowd_label"].to_numpy(), best).astype(object)
    label[ev.sum(axis=1) == 0] = None
    return label, ok


def find_label_files(root) -> dict[str, object]:
    """{folder name: label.csv path} for the FER2013Train/Valid/Test folders found under ``root``."""
    from pathlib import Path

    from fer_core.sources.readers import walk_files

    out = {}
    for rel in walk_files(Path(root)):
        if rel.name == "label.csv" and len(rel.parts) >= 2 and rel.parts[-2] in FOLDERS:
            out.setdefault(rel.parts[-2], Path(root) / Path(*rel.parts))
    return out


def read_votes(root) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
    """Every folder's votes with ``path`` (relative to ``root``), ``split`` and ``usage``; and the problems as
    ``(folder relative to root, where, why)``."""
    from pathlib import Path

    frames, problems = [], []
    for folder, lab in sorted(find_label_files(root).items()):
        votes, probs = parse_label_csv(Path(lab).read_text(errors="replace"), f"{folder}/label.csv")
        rel_dir = Path(lab).parent.relative_to(Path(root)).as_posix()
        problems += [(rel_dir, what, why) for what, why in probs]
        votes.insert(1, "path", rel_dir + "/" + votes["image"])
        votes.insert(2, "split", FOLDERS[folder][0])
        votes.insert(3, "usage", FOLDERS[folder][1])
        frames.append(votes)
    cols = ["image", "path", "split", "usage"] + [f"votes_{c}" for c in VOTE_COLUMNS]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)), problems


def read_msft(root, numeric_map=None):
    """Records of Microsoft's FER+ layout: one per PNG with a valid ``label.csv`` row (the catalog label is the
    crowd majority, see :func:`catalog_label`). A row whose PNG is missing, a PNG without a row, a bad row and
    an image no annotator saw an expression in are listed as rejected with the reason."""
    from pathlib import Path, PurePosixPath

    from fer_core.errors import InvalidInput
    from fer_core.sources.readers import Record, classify_file, walk_files

    root = Path(root)
    labels = find_label_files(root)
    if not labels:
        raise InvalidInput("The FER+ layout expects FER2013Train/, FER2013Valid/ or FER2013Test/ folders, each with "
                           "a label.csv; none was found.",
                           "Import the folder (or zip) Microsoft's FERPlus tools generate, e.g. data/FER2013Train/….")
    votes, problems = read_votes(root)
    label, _ok = catalog_label(votes) if len(votes) else (np.array([], object), np.array([], bool))
    rows = set(votes["path"])
    present = set()
    folders = {Path(p).parent.relative_to(root).as_posix() for p in labels.values()}
    for rel in walk_files(root):
        if classify_file(rel) == "image" and str(PurePosixPath(*rel.parts[:-1])) in folders:
            present.add(rel.as_posix())
    import re

    for rel_dir, what, why in problems:     # a bad row of an image that is there: that image is rejected for it
        m = re.search(r"\(([^()/]+)\)$", what)
        png = f"{rel_dir}/{m.group(1)}" if m else None
        if png in present and png not in rows:
            yield Record(png, FOLDERS.get(PurePosixPath(png).parent.name, ("train",))[0], "", "", None,
                         f"{what.split(' (')[0]}: {why}")
            rows.add(png)                   # reported once, not again as "no row"
        else:
            yield Record(what if len(what) <= 120 else what[:117] + "...", "train", "", "", None, f"label.csv: {why}")
    for i, (path, split, usage) in enumerate(zip(votes["path"], votes["split"], votes["usage"])):
        if path not in present:
            yield Record(path, split, usage, "", label[i], "label.csv names this image, but the file is missing")
        elif label[i] is None:
            yield Record(path, split, usage, "", None, "no annotator saw an expression (votes: not a face / unknown)")
        else:
            yield Record(path, split, usage, str(label[i]), str(label[i]))
    for path in sorted(present - rows):
        yield Record(path, FOLDERS.get(PurePosixPath(path).parent.name, ("train",))[0], "", "", None,
                     "no row in label.csv (no crowd votes)")
