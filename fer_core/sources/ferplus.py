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
