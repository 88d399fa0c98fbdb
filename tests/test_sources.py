"""Label taxonomy, registry and layout readers (on fixtures built from real FER2013 images)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import decode_gray, write_tree
from fer_core.errors import InvalidInput
from fer_core.sources import registry
from fer_core.sources.labels import CANONICAL, canonical_label


@pytest.mark.parametrize("name,expected", [
    ("anger", "angry"), ("Angry", "angry"), ("happiness", "happy"), ("HAPPY", "happy"), ("sadness", "sad"),
    ("surprised", "surprise"), ("fearful", "fear"), ("disgusted", "disgust"), ("Contempt", "contempt"),
    ("Neutral", "neutral"), ("01_happy", "happy"), ("sad-faces", "sad"), ("AN", "angry"), ("SU", "surprise"),
    ("unknown", None), ("images", None), ("CK+48", None), ("", None),
])
def test_label_synonyms(name, expected):
    assert canonical_label(name) == expected


def test_numeric_maps_differ_per_dataset():
    assert canonical_label("1", registry.RAFDB_IDS) == "surprise"
    assert canonical_label("6", registry.RAFDB_IDS) == "angry"
    assert canonical_label("0", registry.AFFECTNET_IDS) == "neutral"
    assert canonical_label("0", registry.FER2013_IDS) == "angry"
    assert canonical_label("9", registry.FER2013_IDS) is None
    assert canonical_label("3") is None  # numbers need a map


def test_registry_entries_complete():
    for want in ("fer2013", "ckplus", "rafdb", "jaffe", "expw", "affectnet", "ferplus", "folders", "fer2013-csv"):
        s = registry.get_spec(want)
        assert s.layout and s.reader in registry.READERS
        assert set(s.labels) <= set(CANONICAL)
    assert registry.get_spec("fer2013").kaggle_slug == "msambare/fer2013"
    assert registry.get_spec("fer2013").verified == "archive"
    assert registry.get_spec("ckplus").kaggle_slug == "shawon10/ckplus"
    assert registry.get_spec("rafdb").kaggle_slug == "shuvoalok/raf-db-dataset"
    assert registry.by_slug("shawon10/ckplus").name == "ckplus"
    # what has been tried on a real copy says so (tests: test_crowd, test_ckplus, the ExpW sample below); the rest
    # is honest about being checked on fixtures only
    real = ("fer2013", "ferplus", "ckplus", "expw")
    assert all(s.verified == "fixtures" for n, s in registry.SPECS.items() if n not in real)
    assert all(registry.get_spec(n).verified == "archive" for n in real)
    assert registry.get_spec("ferplus").verified == "archive"            # tests/test_crowd.py, the real copy
    assert registry.by_slug("subhaditya/fer2013plus").name == "ferplus-folders"   # the Kaggle folders layout stays


def _imgs(fer_sample, n):
    return list(fer_sample.values())[:n]


def test_fer2013_reader_usage_and_split(tmp_path, fer_sample):
    files = {n: b for n, b in list(fer_sample.items())}
    write_tree(tmp_path, files)
    recs = list(registry.get_spec("fer2013").read(tmp_path))
    assert len(recs) == len(files) and not any(r.problem for r in recs)
    for r in recs:
        fname = Path(r.path).name
        if fname.startswith("Training_"):
            assert (r.usage, r.split) == ("Training", "train")
        elif fname.startswith("PublicTest_"):
            assert (r.usage, r.split) == ("PublicTest", "val")
        else:
            assert (r.usage, r.split) == ("PrivateTest", "test")
        assert r.label == Path(r.path).parent.name == r.label_orig


def test_ckplus_reads_one_copy(tmp_path, fer_sample):
    imgs = _imgs(fer_sample, 4)
    files = {}
    for i, lab in enumerate(["anger", "contempt", "sadness", "happy"]):
        files[f"CK+48/{lab}/S010_00{i}_00000017.png"] = imgs[i]
        files[f"ck/CK+48/{lab}/S010_00{i}_00000017.png"] = imgs[i]
    write_tree(tmp_path, files)
    spec = registry.detect_spec(tmp_path)
    assert spec.name == "ckplus"
    recs = list(spec.read(tmp_path))
    assert len(recs) == 4
    assert sorted(r.label for r in recs) == ["angry", "contempt", "happy", "sad"]
    assert all(r.path.startswith("CK+48/") for r in recs)


def test_rafdb_numeric_folders(tmp_path, fer_sample):
    imgs = _imgs(fer_sample, 3)
    write_tree(tmp_path, {"DATASET/train/1/train_00001_aligned.jpg": imgs[0],
                          "DATASET/train/6/train_00002_aligned.jpg": imgs[1],
                          "DATASET/test/4/test_0001_aligned.jpg": imgs[2],
                          "train_labels.csv": b"image,label\ntrain_00001_aligned.jpg,1\n"})
    spec = registry.detect_spec(tmp_path)
    assert spec.name == "rafdb"
    recs = {r.path: r for r in spec.read(tmp_path)}
    assert recs["DATASET/train/1/train_00001_aligned.jpg"].label == "surprise"
    assert recs["DATASET/train/6/train_00002_aligned.jpg"].label == "angry"
    assert recs["DATASET/test/4/test_0001_aligned.jpg"].label == "happy"
    assert recs["DATASET/test/4/test_0001_aligned.jpg"].split == "test"


def test_jaffe_labels_from_file_names(tmp_path, fer_sample):
    imgs = _imgs(fer_sample, 3)
    write_tree(tmp_path, {"images/KA.AN1.39.tiff": imgs[0], "images/KL.HA2.30.tiff": imgs[1],
                          "images/NM.SA1.104.tiff": imgs[2], "data.csv": b"filepath,student,facial_expression\n"})
    spec = registry.detect_spec(tmp_path)
    assert spec.name == "jaffe"
    labels = {Path(r.path).name: r.label for r in spec.read(tmp_path)}
    assert labels == {"KA.AN1.39.tiff": "angry", "KL.HA2.30.tiff": "happy", "NM.SA1.104.tiff": "sad"}


def test_expw_crops_faces(tmp_path, fer_sample):
    # a "scene" = 3×3 real faces; label.lst points at two of them
    faces = [decode_gray(b) for b in _imgs(fer_sample, 9)]
    scene = np.vstack([np.hstack(faces[r * 3:(r + 1) * 3]) for r in range(3)])
    (tmp_path / "origin").mkdir()
    cv2.imwrite(str(tmp_path / "origin" / "scene_1.jpg"), scene)
    (tmp_path / "label.lst").write_text(
        "scene_1.jpg 0 0 0 48 48 90.5 3\n"        # top-left face, happy
        "scene_1.jpg 1 48 48 96 96 80.0 6\n"      # centre face, neutral
        "scene_1.jpg 1 48 48 96 96 80.0 6\n"      # duplicate row
        "missing.jpg 0 0 0 48 48 90 2\n"          # image not present
        "scene_1.jpg 2 0 0 48 48 90 9\n")         # unknown label
    spec = registry.detect_spec(tmp_path)
    assert spec.name == "expw"
    recs = list(spec.read(tmp_path))
    ok = [r for r in recs if not r.problem]
    bad = [r for r in recs if r.problem]
    assert sorted(r.label for r in ok) == ["happy", "neutral"]
    crop = cv2.imread(str(tmp_path / ok[0].path), cv2.IMREAD_GRAYSCALE)
    assert crop.shape == (48, 48)
    assert np.abs(crop.astype(int) - faces[0 if ok[0].label == "happy" else 4]).mean() < 3
    reasons = " | ".join(r.problem for r in bad)
    assert "duplicate" in reasons and "not found" in reasons and "unknown label 9" in reasons
    # a box mostly outside the image is listed; a margin grows the crop (clipped at the image's edge); progress
    with open(tmp_path / "label.lst", "a") as fh:
        fh.write("scene_1.jpg 3 100 100 400 400 90 3\n")
    events = []
    recs = list(spec.read(tmp_path, progress=events.append, options={"crop_margin": 0.25}))
    assert any("lies outside the 144×144 image" in r.problem for r in recs if r.problem)
    ok = sorted((r for r in recs if not r.problem), key=lambda r: r.label)
    assert [cv2.imread(str(tmp_path / r.path), cv2.IMREAD_GRAYSCALE).shape for r in ok] == [(60, 60), (72, 72)]
    crops = [e for e in events if e.stage == "crop"]
    assert crops and crops[-1].done == crops[-1].total == 3
    with pytest.raises(InvalidInput, match="out of range"):
        list(spec.read(tmp_path, options={"crop_margin": 2}))
    with pytest.raises(InvalidInput, match="takes no reader options"):
        registry.get_spec("fer2013").read(tmp_path, options={"crop_margin": 0.1})


def test_real_expw_sample_imports_with_a_recorded_margin(tmp_path):
    from conftest import ROOT, _missing_data
    from fer_core import datasets

    z = (ROOT.parent / "shared" / "datasets" / "expw" / "archive.zip").resolve()
    if not z.exists():
        _missing_data(f"the real ExpW sample is not at {z}")
    res = datasets.import_dataset(z, "expw", cache=tmp_path / "c", reader_options={"crop_margin": 0.1})
    assert res.n_images == 1_403 and res.n_rejected == 0                    # ../shared/datasets/README.md
    assert res.dataset.meta["reader_options"] == {"crop_margin": 0.1}
    assert set(res.dataset.catalog["label"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    from fer_core.about import about as about_of

    about = dict(about_of(res.dataset))       # what the Datasets page tells a person about it
    assert about["layout"] == "checked on the real archive" and about["licence"] == "Non-commercial research."
    assert "split expw --by none" in about["splits"] and about["subjects"].startswith("not known")
    assert "colour" in about["images"] and about["labels"].startswith("angry ← 0")


def test_generic_folders_with_synonyms_and_splits(tmp_path, fer_sample):
    imgs = _imgs(fer_sample, 5)
    write_tree(tmp_path, {"my set/Training/Happiness/a.jpg": imgs[0], "my set/validation/sadness/b.jpg": imgs[1],
                          "my set/test/Surprised/c.jpg": imgs[2], "my set/test/weird/d.jpg": imgs[3],
                          "my set/notes.bin": imgs[4], "my set/README.md": b"hello"})
    spec = registry.detect_spec(tmp_path)
    assert spec.name == "folders"
    recs = {Path(r.path).name: r for r in spec.read(tmp_path)}
    assert (recs["a.jpg"].label, recs["a.jpg"].split) == ("happy", "train")
    assert (recs["b.jpg"].label, recs["b.jpg"].split) == ("sad", "val")
    assert (recs["c.jpg"].label, recs["c.jpg"].split) == ("surprise", "test")
    assert recs["d.jpg"].problem == "unknown label 'weird'"
    assert "not an image file" in recs["notes.bin"].problem
    assert "README.md" not in recs  # metadata is not an image and not a problem
