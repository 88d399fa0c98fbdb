"""FER+ crowd votes (a building block of issue 17): parsing Microsoft's label.csv files from the real FER+ copy,
what the votes say, and bad rows listed instead of raised."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from conftest import ROOT, _missing_data
from fer_core.sources import ferplus

FERPLUS_ZIP = (ROOT.parent / "shared" / "datasets" / "ferplus" / "archive.zip").resolve()


@pytest.fixture(scope="module")
def ferplus_zip():
    if not FERPLUS_ZIP.exists():
        _missing_data(f"the real FER+ copy is not at {FERPLUS_ZIP} (../shared missing)")
    return zipfile.ZipFile(FERPLUS_ZIP)


def test_the_real_label_files_parse_and_pair_with_their_images(ferplus_zip):
    names = set(ferplus_zip.namelist())
    total, labels = 0, []
    for folder, (split, usage) in ferplus.FOLDERS.items():
        votes, problems = ferplus.parse_label_csv(ferplus_zip.read(f"data/{folder}/label.csv").decode(), folder)
        assert problems == []
        pngs = {n.rsplit("/", 1)[1] for n in names if n.startswith(f"data/{folder}/") and n.endswith(".png")}
        assert set(votes["image"]) == pngs                       # every row has its PNG and every PNG a row
        s = ferplus.summarize(votes)
        assert (s["crowd_votes"] >= 1).all() and s["crowd_share"].between(0, 1).all()
        total += len(votes)
        labels.append(s["crowd_label"])
    assert total == 35_710                                        # the copy's README
    import pandas as pd

    lab = pd.concat(labels)
    assert set(lab) <= {"angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise", "not_face",
                        "unknown", "tie"}
    assert (lab == "happy").sum() > 5_000 and 0 < (lab == "not_face").sum() < 1_000 and (lab == "tie").sum() > 0


def test_majority_ties_and_what_is_not_an_expression():
    rows = np.zeros((5, len(ferplus.VOTE_COLUMNS)), int)
    col = {c: i for i, c in enumerate(ferplus.VOTE_COLUMNS)}
    rows[0, col["happiness"]], rows[0, col["neutral"]] = 7, 3          # happy, 70%
    rows[1, col["contempt"]], rows[1, col["anger"]] = 6, 4             # contempt is a class of its own
    rows[2, col["NF"]], rows[2, col["sadness"]] = 6, 4                 # not a face
    rows[3, col["unknown"]] = 10
    rows[4, col["fear"]], rows[4, col["surprise"]] = 5, 5              # a tie
    s = ferplus.summarize(rows)
    assert list(s["crowd_label"]) == ["happy", "contempt", "not_face", "unknown", "tie"]
    assert list(s["crowd_share"]) == [0.7, 0.6, 0.6, 1.0, 0.5]


def test_bad_rows_are_listed_with_the_reason_never_raised():
    text = "\n".join([
        'fer1.png,"(0, 0, 48, 48)",4,0,0,0,1,0,0,4,1,0',              # fine
        'fer2.png,"(0, 0, 48, 48)",4,0,0,0,1,0,0,4,1',                # 11 columns
        'fer3.png,"(0, 0, 48, 48)",4,x,0,0,1,0,0,4,1,0',              # not a number
        'fer4.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,0,0',              # no votes
        'fer5.png,"(0, 0, 48, 48)",4,-1,0,0,1,0,0,4,1,0',             # negative
        'fer1.png,"(0, 0, 48, 48)",0,10,0,0,0,0,0,0,0,0',             # listed twice
    ])
    votes, problems = ferplus.parse_label_csv(text, "FER2013Train/label.csv")
    assert list(votes["image"]) == ["fer1.png"] and votes["votes_neutral"].item() == 4
    reasons = [r for _, r in problems]
    assert reasons == ["11 columns, expected 12 (image, box, 10 vote counts)", "a vote count is not a whole number",
                       "no votes", "a vote count is negative", "the image is listed twice; the first line is used"]
    assert problems[0][0] == "FER2013Train/label.csv line 2 (fer2.png)"
