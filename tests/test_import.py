"""Local imports (folder, zip, fer2013.csv) of real FER2013 images; rejected files; idempotence; atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import decode_gray, write_tree, zip_tree
from fer_core import datasets
from fer_core.errors import Cancelled, InvalidInput
from fer_core.progress import CancelToken


def _expected(files: dict[str, bytes]) -> pd.Series:
    return pd.Series([n.split("/")[1] for n in files]).value_counts().sort_index()


def test_folder_import_matches_source(tmp_path, fer_sample):
    src = write_tree(tmp_path / "src", fer_sample)
    res = datasets.import_dataset(src, "fer-folder")
    cat = res.dataset.catalog
    assert res.changed and len(cat) == len(fer_sample) and res.n_rejected == 0
    assert (cat["label"].value_counts().sort_index() == _expected(fer_sample)).all()
    assert set(cat["split"]) == {"train", "val", "test"}
    assert cat["id"].is_unique
    assert (cat[["width", "height", "channels"]].drop_duplicates().values.tolist() == [[48, 48, 1]])
    # ids are content hashes: the same bytes give the same id prefix
    one = cat.iloc[0]
    import hashlib
    data = (res.dataset.images / one["path"]).read_bytes()
    assert one["content_hash"] == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert one["id"].startswith(one["content_hash"][:16])
    # the source is untouched and the store holds copies
    assert all((src / n).read_bytes() == b for n, b in list(fer_sample.items())[:20])
    assert not res.dataset.images.is_relative_to(src)


def test_zip_import_and_idempotent_reimport(tmp_path, fer_sample):
    z = zip_tree({f"archive/{k}": v for k, v in fer_sample.items()}, tmp_path / "a.zip")
    r1 = datasets.import_dataset(z, "fer-zip")
    r2 = datasets.import_dataset(z, "fer-zip")
    assert r1.changed and not r2.changed
    assert r1.dataset.meta["catalog_hash"] == r2.dataset.meta["catalog_hash"]
    pd.testing.assert_frame_equal(r1.dataset.catalog, r2.dataset.catalog)
    assert r1.dataset.root == r2.dataset.root
    assert datasets.list_datasets() == ["fer-zip"]


def test_duplicate_files_get_distinct_stable_ids(tmp_path, fer_sample):
    items = list(fer_sample.items())
    files = dict(items[:10])
    files["train/happy/Training_99999991.jpg"] = items[0][1]  # byte-identical copy
    files["test/happy/PrivateTest_99999992.jpg"] = items[0][1]
    src = write_tree(tmp_path / "src", files)
    cat = datasets.import_dataset(src, "dups").dataset.catalog
    same = cat[cat["content_hash"] == cat["content_hash"].iloc[cat.index[cat["path"] == items[0][0]][0]]]
    assert len(same) == 3 and same["id"].is_unique
    assert sorted(same["id"].str.len().tolist()) == [16, 18, 18]
    cat2 = datasets.import_dataset(src, "dups2").dataset.catalog
    assert cat["id"].tolist() == cat2["id"].tolist()


def _png_header_only(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))


def test_bad_files_are_rejected_with_reasons(tmp_path, fer_sample):
    items = list(fer_sample.items())
    good = dict(items[:20])
    jpeg = items[0][1]
    bad = {
        "train/angry/Training_90000001.jpg": jpeg[: len(jpeg) // 2],            # truncated
        "train/angry/Training_90000002.jpg": b"",                                 # zero-size
        "train/angry/Training_90000003.jpg": b"this is not an image at all",      # not an image
        "train/angry/Training_90000004.jpg": jpeg[:200] + b"\x00" * 300 + jpeg[500:],  # corrupt body
    }
    import cv2
    tiny = cv2.imencode(".png", np.zeros((2, 2), np.uint8))[1].tobytes()
    bad["train/angry/Training_90000005.png"] = tiny                                # absurd dims
    bad["train/angry/Training_90000006.png"] = _png_header_only(100_000, 100_000)   # absurd header
    src = write_tree(tmp_path / "src", {**good, **bad})
    res = datasets.import_dataset(src, "with-bad")
    rej = res.dataset.rejected.set_index("path")["reason"]
    cat = res.dataset.catalog
    assert len(cat) == 20
    assert "truncated" in rej["train/angry/Training_90000001.jpg"]
    assert rej["train/angry/Training_90000002.jpg"] == "zero-size file"
    assert "not an image" in rej["train/angry/Training_90000003.jpg"]
    assert rej["train/angry/Training_90000004.jpg"].startswith(("corrupt", "truncated"))
    assert "absurd dimensions 2×2" in rej["train/angry/Training_90000005.png"]
    assert "absurd dimensions" in rej["train/angry/Training_90000006.png"]
    assert set(cat["path"]).isdisjoint(rej.index)


def _fer_csv(fer_sample, path: Path, extra_rows: list[str] = ()) -> list[tuple]:
    """Build a fer2013.csv from real images; returns (emotion, usage, pixels) per good row."""
    ids = {"angry": 0, "disgust": 1, "fear": 2, "happy": 3, "sad": 4, "surprise": 5, "neutral": 6}
    rows = []
    for name, data in fer_sample.items():
        lab = name.split("/")[1]
        usage = Path(name).name.split("_")[0]
        px = decode_gray(data)
        rows.append((ids[lab], usage, px))
    with open(path, "w", newline="") as fh:
        fh.write("emotion,pixels,Usage\n")
        for emo, usage, px in rows:
            fh.write(f"{emo},{' '.join(map(str, px.ravel()))},{usage}\n")
        for r in extra_rows:
            fh.write(r + "\n")
    return rows


def test_fer2013_csv_import(tmp_path, fer_sample):
    rows = _fer_csv(fer_sample, tmp_path / "fer2013.csv")
    res = datasets.import_dataset(tmp_path / "fer2013.csv", "fer-csv")
    cat = res.dataset.catalog
    assert len(cat) == len(rows) and res.n_rejected == 0
    assert res.dataset.meta["spec"] == "fer2013-csv"
    assert cat["usage"].value_counts().to_dict() == pd.Series([u for _, u, _ in rows]).value_counts().to_dict()
    assert set(cat.loc[cat.usage == "PublicTest", "split"]) == {"val"}
    assert set(cat.loc[cat.usage == "PrivateTest", "split"]) == {"test"}
    # lossless: the pixels written are the pixels in the csv, line for line
    import cv2
    first = cat[cat["path"].str.endswith("_00002.png")].iloc[0]
    img = cv2.imread(str(res.dataset.images / first["path"]), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(img, rows[0][2])
    assert first["label_orig"] == str(rows[0][0])


def test_fer2013_csv_bad_rows_reported_by_line_and_column(tmp_path, fer_sample):
    good_px = " ".join(["7"] * 2304)
    extra = [
        f"9,{good_px},Training",                                 # unknown emotion
        f"3,{' '.join(['7'] * 2303)},Training",                  # short pixels
        f"3,{good_px[:-1]}300,PublicTest",                       # out of range
        f"3,{good_px},Validation",                               # unknown usage
        f"x,{good_px},Training",                                 # non-integer emotion
        f"3,{good_px.replace('7', 'a', 1)},Training",            # non-numeric pixel
    ]
    rows = _fer_csv(fer_sample, tmp_path / "fer2013.csv", extra)
    res = datasets.import_dataset(tmp_path / "fer2013.csv", "fer-csv-bad")
    assert len(res.dataset.catalog) == len(rows)
    reasons = res.dataset.rejected["reason"].tolist()
    n = len(rows) + 2  # first extra line number (header is line 1)
    assert reasons == [
        f"line {n}, column emotion: unknown emotion id 9 (expected 0–6)",
        f"line {n + 1}, column pixels: 2303 values (expected 2304)",
        f"line {n + 2}, column pixels: value 300 out of range 0–255",
        f"line {n + 3}, column Usage: unknown Usage (expected Training, PublicTest or PrivateTest)",
        f"line {n + 4}, column emotion: not an integer (expected 0–6)",
        f"line {n + 5}, column pixels: non-numeric value (value 1 of 2304)",
    ]
    # reasons name the line and column, never the file's text
    assert not any("Validation" in r or "'x'" in r or "'a'" in r for r in reasons)


def test_csv_not_in_format_is_refused(tmp_path):
    p = tmp_path / "other.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InvalidInput, match="no 'emotion' column") as ei:
        datasets.import_dataset(p, "nope")
    assert "emotion, pixels and Usage" in ei.value.hint
    assert datasets.list_datasets() == []


def test_zip_holding_fer2013_csv(tmp_path, fer_sample):
    _fer_csv(dict(list(fer_sample.items())[:30]), tmp_path / "fer2013.csv")
    z = zip_tree({"fer2013/fer2013.csv": (tmp_path / "fer2013.csv").read_bytes()}, tmp_path / "deadskull.zip")
    res = datasets.import_dataset(z, "csvzip")
    assert len(res.dataset.catalog) == 30 and res.dataset.meta["spec"] == "fer2013-csv"


def test_empty_import_registers_nothing(tmp_path):
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    (tmp_path / "empty" / "happy" / "x.txt").write_text("no images")
    with pytest.raises(InvalidInput, match="No usable images"):
        datasets.import_dataset(tmp_path / "empty", "empty")
    assert datasets.list_datasets() == []
    assert not list((datasets.dataset_dir("empty")).glob(".staging-*"))


def test_cancelled_import_keeps_previous_state(tmp_path, fer_sample):
    items = list(fer_sample.items())
    src1 = write_tree(tmp_path / "v1", dict(items[:30]))
    r1 = datasets.import_dataset(src1, "keep")
    src2 = write_tree(tmp_path / "v2", dict(items))
    token = CancelToken()
    calls = []

    def progress(ev):
        calls.append(ev.stage)
        if ev.stage == "catalog" and ev.done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        datasets.import_dataset(src2, "keep", progress=progress, cancel=token)
    ds = datasets.load("keep")
    assert ds.meta["catalog_hash"] == r1.dataset.meta["catalog_hash"] and len(ds.catalog) == 30
    assert not list(datasets.dataset_dir("keep").glob(".staging-*"))
    assert len([p for p in datasets.dataset_dir("keep").iterdir() if p.name.startswith("data-")]) == 1


def test_reimport_with_changes_swaps_atomically_and_keeps_work(tmp_path, fer_sample):
    items = list(fer_sample.items())
    r1 = datasets.import_dataset(write_tree(tmp_path / "v1", dict(items[:30])), "swap")
    work = datasets.dataset_dir("swap") / "review.sqlite"
    work.write_text("the person's overrides")
    r2 = datasets.import_dataset(write_tree(tmp_path / "v2", dict(items[:40])), "swap")
    assert r2.changed and len(r2.dataset.catalog) == 40
    assert not r1.dataset.root.exists()           # old data removed after the switch
    assert work.read_text() == "the person's overrides"
    assert (datasets.dataset_dir("swap") / "data").is_symlink()
