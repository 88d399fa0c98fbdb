"""Export: counts match files, CLAHE, determinism, relabels, atomicity under concurrency and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, cli_paused_after, import_and_scan
from fer_core import datasets, decisions, export, recipe, review
from fer_core.errors import Busy


@pytest.fixture
def ds_small(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "ex")
    inp = decisions.load_inputs("ex")
    rec = recipe.default_recipe(inp.signals)
    rec = rec.with_filter("sharpness", min=float(np.percentile(inp.signals["sharpness"], 15)))  # reject a visible share
    return inp, rec


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_manifest_counts_match_files_and_test_untouched(ds_small, tmp_path):
    inp, rec = ds_small
    res = export.export("ex", rec, "ex-clean", csv=True)
    root = res.path
    m = json.loads((root / "manifest.json").read_text())
    on_disk = {}
    for p in root.rglob("*"):
        if p.is_file() and p.name not in ("manifest.json", "fer2013.csv"):
            split, lab = p.relative_to(root).parts[:2]
            on_disk.setdefault(split, {}).setdefault(lab, 0)
            on_disk[split][lab] += 1
    assert on_disk == m["counts"]["after"]
    assert sum(sum(v.values()) for v in on_disk.values()) == m["counts"]["after_total"]
    dec = decisions.run(inp, rec, review.store_for(datasets.load("ex")).overrides())
    assert m["counts"]["after_total"] == int(dec["keep"].sum()) < len(inp.signals)
    # the test split is exported untouched, byte for byte
    ds = datasets.load("ex")
    test_rows = inp.signals[inp.signals["split"] == "test"]
    assert sum(m["counts"]["after"]["test"].values()) == len(test_rows)
    for rel in test_rows["path"].head(20):
        out = root / "test" / rel.split("/")[1] / rel.split("/")[-1]
        assert out.read_bytes() == (ds.images / rel).read_bytes()
    assert m["source"]["catalog_hash"] == ds.meta["catalog_hash"] and m["recipe"] == rec.to_dict()
    assert m["reasons"]["sharpness"] > 0 and m["clahe"] is None
    # fer2013.csv: one row per kept image, 2,304 pixels, Usage from the split
    lines = (root / "fer2013.csv").read_text().splitlines()
    assert lines[0] == "emotion,pixels,Usage" and len(lines) - 1 == m["counts"]["after_total"]
    first = lines[1].split(",")
    assert len(first[1].split()) == 2304 and first[2] in ("Training", "PublicTest", "PrivateTest")


def test_clahe_changes_pixels_only(ds_small):
    inp, rec = ds_small
    plain = export.export("ex", rec, "plain").path
    cl = export.export("ex", rec, "clahe", clahe=export.Clahe(2.0, 8)).path
    p_files = sorted(p.relative_to(plain).as_posix() for p in plain.rglob("*.jpg"))
    c_files = sorted(p.relative_to(cl).as_posix() for p in cl.rglob("*.png"))
    assert [f[:-4] for f in p_files] == [f[:-4] for f in c_files]  # same images, same places
    changed = 0
    for rel in p_files[:40]:
        a = cv2.imread(str(plain / rel), cv2.IMREAD_GRAYSCALE)
        b = cv2.imread(str(cl / (rel[:-4] + ".png")), cv2.IMREAD_GRAYSCALE)
        assert a.shape == b.shape
        ref = cv2.createCLAHE(2.0, (8, 8)).apply(a)
        assert np.array_equal(b, ref)           # exactly CLAHE of the input, losslessly stored
        changed += int(not np.array_equal(a, b))
    assert changed >= 35
    assert json.loads((cl / "manifest.json").read_text())["clahe"] == {"clip_limit": 2.0, "tile": 8}


def test_export_is_deterministic(ds_small):
    inp, rec = ds_small
    a = export.export("ex", rec, "det-a", csv=True, now=0).path
    b = export.export("ex", rec, "det-b", csv=True, now=1e9).path
    fa, fb = _files(a), _files(b)
    ma, mb = json.loads(fa.pop("manifest.json")), json.loads(fb.pop("manifest.json"))
    assert fa == fb
    assert ma.pop("created") != mb.pop("created")
    assert ma == mb
    za, zb = export.zip_export(a), export.zip_export(b)
    # zips differ only by the folder name inside; same names, same bytes otherwise
    with zipfile.ZipFile(za) as x, zipfile.ZipFile(zb) as y:
        na = [n.split("/", 1)[1] for n in x.namelist()]
        assert na == [n.split("/", 1)[1] for n in y.namelist()]
        assert x.read("det-a/fer2013.csv") == y.read("det-b/fer2013.csv")
    # re-exporting under the same name gives byte-identical files too
    c = export.export("ex", rec, "det-a", csv=True, now=0).path
    assert _files(c) == {**fa, "manifest.json": (c / "manifest.json").read_bytes()}


def test_relabels_are_written_under_the_new_label(ds_small):
    inp, rec = ds_small
    sig = inp.signals
    kept = decisions.run(inp, rec)["keep"].to_numpy()
    target = sig[kept & (sig["split"] == "train").to_numpy() & (sig["label"] == "happy").to_numpy()].iloc[0]
    rs = review.store_for(datasets.load("ex"))
    rs.set(target["id"], "reject")
    rs.set(target["id"], "relabel", label="surprise")
    rs.set(target["id"], "clear")
    assert rs.undo() == [target["id"]]          # undo the clear: back to the relabel
    assert rs.get(target["id"]) == ("relabel", "surprise")
    res = export.export("ex", rec, "relabelled")
    name = target["path"].split("/")[-1]
    assert (res.path / "train" / "surprise" / name).exists()
    assert not (res.path / "train" / "happy" / name).exists()
    assert res.manifest["overrides"]["relabels_applied"] == 1 and res.manifest["overrides"]["count"] == 1
    after = res.manifest["counts"]["after"]["train"]
    before = res.manifest["counts"]["before"]["train"]
    assert after["surprise"] > 0 and after["happy"] <= before["happy"] - 1


def test_concurrent_export_refused_and_no_partial(ds_small, monkeypatch):
    inp, rec = ds_small
    started, release = threading.Event(), threading.Event()
    real_write = export._write

    def slow_write(*a, **k):
        started.set()
        release.wait(30)
        return real_write(*a, **k)

    monkeypatch.setattr(export, "_write", slow_write)
    errors = []
    t = threading.Thread(target=lambda: errors.append(export.export("ex", rec, "same")))
    t.start()
    assert started.wait(30)
    monkeypatch.setattr(export, "_write", real_write)
    with pytest.raises(Busy, match="Another export"):
        export.export("ex", rec, "same")
    root = export.exports_root() / "same"
    assert not root.exists()  # the first is still writing to its temporary folder
    release.set()
    t.join(60)
    assert root.exists() and (root / "manifest.json").exists()


def test_killed_export_leaves_no_partial_folder(ds_small, tmp_path):
    inp, rec = ds_small
    rec_file = rec.save(tmp_path / "r.yaml")
    proc = cli_paused_after(tmp_path, ["--quiet", "export", "ex", "--recipe", str(rec_file), "--export-name", "killed",
                                       "--clahe", "--csv"], "fer_core.export:_fer_row", after=3)
    parent = export.exports_root()
    assert any(parent.glob(".killed.tmp-*/*/*/*"))  # images written, the export not finished
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (parent / "killed").exists()
    assert list(parent.glob(".killed.tmp-*"))  # only the temporary folder is left...
    export.export("ex", rec, "killed")
    assert not list(parent.glob(".killed.tmp-*"))  # ...and the next export removes it
    assert (parent / "killed" / "manifest.json").exists()


def test_cli_export(ds_small, tmp_path):
    inp, rec = ds_small
    rf = rec.save(tmp_path / "r.yaml")
    out = tmp_path / "out-dir"
    r = subprocess.run([sys.executable, "-m", "fer_core", "export", "ex", "--recipe", str(rf), "--clahe", "--out",
                        str(out), "--zip"], env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.json").exists() and (tmp_path / "out-dir.zip").exists()
    m = json.loads((out / "manifest.json").read_text())
    assert m["clahe"] == {"clip_limit": 2.0, "tile": 8}
    with zipfile.ZipFile(tmp_path / "out-dir.zip") as z:
        assert "out-dir/manifest.json" in z.namelist()
        assert sum(1 for n in z.namelist() if n.endswith(".png")) == m["counts"]["after_total"]
