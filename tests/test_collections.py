"""Issue 18: merged training sets (collections) on real data: real FER2013 images (a sample) + the real CK+ copy
(split by subject) + a small third member made of planted copies, so that every cross-member copy is known in
advance: a CK+ *test* picture inside FER2013's training folder, a FER2013 test picture re-encoded as a JPEG in the
third member's training folder, a FER2013 training picture there too."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, _missing_data, decode_gray, encode, write_tree
from fer_core import cli, collections, datasets, jobs, links, splits
from fer_core.errors import DatasetError, InvalidInput

CK_ZIP = (ROOT.parent / "shared" / "datasets" / "ckplus" / "archive.zip").resolve()


@pytest.fixture(scope="module")
def base(fer_sample, tmp_path_factory):
    """fer (real FER2013 JPGs + one planted CK+ test picture in train), ckplus (real, split by subject), extra (a
    FER2013 test picture as a JPEG and a FER2013 training picture, both in train, + 20 other FER2013 pictures)."""
    if not CK_ZIP.exists():
        _missing_data(f"real CK+ archive not found at {CK_ZIP}")
    root = tmp_path_factory.mktemp("collections")
    cache = root / "cache"
    datasets.import_dataset(CK_ZIP, "ckplus", cache=cache)
    splits.make("ckplus", by="subject", seed=0, cache=cache)
    ck = datasets.load("ckplus", cache)
    doc = splits.load(ck)
    cat = ck.catalog.assign(split=lambda c: c["id"].map(doc["split"]))
    ck_test = cat[(cat["split"] == "test") & (cat["label"] == "happy")].sort_values("id").iloc[0]
    items = sorted(fer_sample.items())
    f13 = dict(items[:400])
    f13["train/happy/Training_99999901.png"] = ck.image_path(ck_test["path"]).read_bytes()   # CK+ test → FER train
    write_tree(root / "f13", f13)
    datasets.import_dataset(root / "f13", "fer", spec="fer2013", cache=cache)
    fer_test = next(n for n in f13 if "PrivateTest" in n)
    fer_train = next(n for n in f13 if n.startswith("train/") and "/disgust/" not in n)
    extra = {f"train/{n.split('/')[1]}/x{i:03d}.png": encode(decode_gray(b)) for i, (n, b) in enumerate(items[400:420])}
    extra["train/sad/copy_of_test.jpg"] = encode(decode_gray(f13[fer_test]), ".jpg", 85)   # another label, too
    extra["train/angry/copy_of_train.png"] = encode(decode_gray(f13[fer_train]))
    write_tree(root / "ex", extra)
    datasets.import_dataset(root / "ex", "extra", spec="folders", cache=cache)
    fcat = datasets.load("fer", cache).catalog.set_index("path")
    return {"cache": cache, "ck_test_id": ck_test["id"], "fer_test_id": fcat.loc[fer_test, "id"],
            "fer_train_id": fcat.loc[fer_train, "id"],
            "fer_planted_id": fcat.loc["train/happy/Training_99999901.png", "id"]}


@pytest.fixture(scope="module")
def built(base):
    """fer (raw) + ckplus (its data-derived default recipe) + extra (raw); contempt dropped."""
    cache = base["cache"]
    col, res = collections.create("mix", ["fer", "ckplus", "extra"], {"fer": "raw", "extra": "raw"},
                                  contempt="drop", cache=cache)
    return {**base, "res": res}


def _copy(base, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(base["cache"], cache, symlinks=True)
    for lk in cache.glob("datasets/*/.lock*"):
        lk.unlink()
    return cache


def test_a_collection_is_a_dataset_with_counts_per_source_split_and_label(built):
    cache, res = built["cache"], built["res"]
    ds = datasets.load("mix", cache)
    cat, rej = ds.catalog, ds.rejected
    assert ds.meta["spec"] == "collection" and ds.meta["source"]["members"][1]["dataset"] == "ckplus"
    assert set(cat["usage"]) == {"fer", "ckplus", "extra"}
    assert (cat["width"] == 48).all() and (cat["height"] == 48).all() and (cat["channels"] == 1).all()
    # every image keeps its member's split (CK+: its stored subject split) and its member's final label
    ck = datasets.load("ckplus", cache)
    assigned = splits.load(ck)["split"]
    ck_rows = cat[cat["usage"] == "ckplus"]
    member_id = ck_rows["path"].str.extract(r"/([^/]+)\.png$")[0]
    assert (ck_rows["split"].to_numpy() == member_id.map(assigned).to_numpy()).all()
    assert set(ck_rows["split"]) == {"train", "val", "test"}
    # counts per source × split × label = what each member's decisions keep, less what the build lists as left out
    rec = res.record
    fer_cat = datasets.load("fer", cache).catalog
    fer_counts = fer_cat.groupby(["split", "label"]).size()
    got = cat[cat["usage"] == "fer"].groupby(["split", "label"]).size()
    assert got.sum() == fer_counts.sum() - 1                          # only the planted CK+ test picture is out
    assert rec["counts"]["fer"]["train"]["happy"] == fer_counts[("train", "happy")] - 1
    m_ck = next(m for m in rec["members"] if m["dataset"] == "ckplus")
    assert m_ck["recipe_name"] == "ckplus-default" and 0 < m_ck["kept_by_recipe"] < m_ck["images"] == 981
    assert m_ck["included"] == m_ck["kept_by_recipe"] - m_ck["contempt_dropped"] - m_ck["copies_dropped"]
    assert sum(sum(r.values()) for r in rec["counts"]["ckplus"].values()) == m_ck["included"] == len(ck_rows)
    # contempt dropped by choice: listed as rejected with the reason, none in the catalog
    assert "contempt" not in set(cat["label"])
    dropped = rej[rej["reason"].str.startswith("contempt dropped")]
    assert len(dropped) == m_ck["contempt_dropped"] > 0 and set(dropped["label_orig"]) == {"contempt"}
    assert any("neutral" in n and "ckplus" in n for n in rec["notes"])       # a label only some members have
    # the CLI shows the same table
    text = collections.format_status(collections.status("mix", cache))
    assert "up to date" in text and "ckplus" in text and "STALE" not in text


def test_a_picture_in_two_members_is_kept_once_never_as_a_training_copy_of_a_test_image(built):
    cache, rec = built["cache"], built["res"].record
    cat = datasets.load("mix", cache).catalog
    rej = datasets.load("mix", cache).rejected
    ids = cat["path"].str.extract(r"^([^/]+)/[^/]+/[^/]+/([^/]+)\.png$")
    have = set(zip(ids[0], ids[1]))
    # CK+ test picture in FER2013's train: FER's training copy goes, CK+'s test copy stays
    assert ("ckplus", built["ck_test_id"]) in have and ("fer", built["fer_planted_id"]) not in have
    # FER2013 test picture as a JPEG in extra's train (another label): extra's copy goes; the same split: the first
    ex = datasets.load("extra", cache).catalog.set_index("path")["id"]
    assert ("fer", built["fer_test_id"]) in have and ("extra", ex["train/sad/copy_of_test.jpg"]) not in have
    assert ("fer", built["fer_train_id"]) in have and ("extra", ex["train/angry/copy_of_train.png"]) not in have
    reasons = rej[rej["reason"].str.startswith("copy of")]
    assert len(reasons) == rec["copies"]["dropped"] >= 3
    assert any(built["ck_test_id"] in r for r in reasons["reason"])
    by = {(p["a"], p["b"]): p for p in rec["copies"]["pairs"]}
    assert by[("fer", "ckplus")]["dropped"] >= 1 and by[("fer", "extra")]["dropped"] >= 2
    assert by[("fer", "extra")]["label_disagreements"] >= 1 and rec["copies"]["by_pixels"] == rec["copies"]["dropped"]
    # on the collection's own pixels: no training image of one source is a copy of another source's test image
    from fer_core.train.data import pixels

    pid, px = pixels(datasets.load("mix", cache))
    c = cat.set_index("id").loc[pid]
    for src in ("fer", "ckplus", "extra"):
        tr = (c["split"].to_numpy() == "train") & (c["usage"].to_numpy() == src)
        te = (c["split"].to_numpy() == "test") & (c["usage"].to_numpy() != src)
        assert len(links.match(px[tr], px[te])) == 0, src


def test_a_link_between_members_is_used_and_the_build_says_so(base, tmp_path):
    cache = _copy(base, tmp_path)
    links.link("fer", "extra", cache=cache)
    _, res = collections.create("mix2", ["fer", "extra"], {"fer": "raw", "extra": "raw"}, cache=cache)
    p = res.record["copies"]["pairs"][0]
    n = res.record["copies"]["through_link"]
    assert p["how"] == "link" and p["dropped"] == n >= 2 and res.record["copies"]["by_pixels"] == 0
    assert f"{n:,} through a link" in res.summary()


def test_contempt_is_kept_or_mapped_by_choice(base, tmp_path):
    cache = _copy(base, tmp_path)
    collections.create("ck-keep", ["ckplus"], contempt="keep", cache=cache)
    collections.create("ck-sad", ["ckplus"], contempt="sad", cache=cache)
    keep = datasets.load("ck-keep", cache).catalog
    sad = datasets.load("ck-sad", cache).catalog
    n = int((keep["label"] == "contempt").sum())
    assert n > 0 and len(keep) == len(sad)
    assert "contempt" not in set(sad["label"])
    assert ((sad["label"] == "sad") & (sad["label_orig"] == "contempt")).sum() == n
    assert (sad["label"] == "sad").sum() == (keep["label"] == "sad").sum() + n


def test_a_reimported_member_a_changed_recipe_or_a_deleted_member_is_said_and_nothing_is_lost(base, tmp_path, capsys):
    cache = _copy(base, tmp_path)
    from fer_core.workspace import Workspace

    ws = Workspace("ckplus", cache)
    rec = ws.default_recipe()
    ws.save_recipe(rec.replace(name="strict"))
    collections.create("st", ["extra", "ckplus"], {"ckplus": "strict"}, cache=cache)
    assert collections.status("st", cache)["stale"] == []
    # the saved recipe changes → stale, and says which
    ws.save_recipe(rec.replace(name="strict").with_filter("sharpness", min=1e9))
    assert any("recipe of 'ckplus' (strict) changed" in s for s in collections.status("st", cache)["stale"])
    # a member re-imported (one image fewer) → stale; rebuild → up to date again
    ex = tmp_path / "ex2"
    shutil.copytree(datasets.load("extra", cache).images, ex)
    next(ex.rglob("x000.png")).unlink()
    datasets.import_dataset(ex, "extra", spec="folders", cache=cache)
    st = collections.status("st", cache)["stale"]
    assert "member 'extra' was re-imported" in st
    assert cli.main(["--cache", str(cache), "--quiet", "collection", "show", "st"]) == 0
    assert "STALE: " in capsys.readouterr().out
    # a stale collection's export is refused: the members' originals may no longer be what was decided on
    assert cli.main(["--cache", str(cache), "--quiet", "export", "st", "--out", str(tmp_path / "stale-exp")]) == 1
    assert "is stale" in capsys.readouterr().err and not (tmp_path / "stale-exp").exists()
    assert cli.main(["--cache", str(cache), "--quiet", "collection", "build", "st"]) == 0
    assert collections.status("st", cache)["stale"] == []
    # a deleted member: a clear error naming it; the built collection stays as it was
    before = datasets.load("st", cache).meta["catalog_hash"]
    shutil.rmtree(datasets.dataset_dir("extra", cache))
    with pytest.raises(DatasetError, match="'extra' is not imported"):
        collections.build("st", cache)
    capsys.readouterr()
    assert cli.main(["--cache", str(cache), "--quiet", "collection", "build", "st"]) == 1
    err = capsys.readouterr().err
    assert "'extra' is not imported" in err and "What to do:" in err and "Traceback" not in err
    assert datasets.load("st", cache).meta["catalog_hash"] == before
    assert "member 'extra' was deleted" in " ".join(collections.status("st", cache)["stale"])


def test_bad_definitions_are_refused_with_one_sentence_each(base):
    cache = base["cache"]
    with pytest.raises(InvalidInput, match=r"unknown key 'contemt' \(did you mean 'contempt'\?\)"):
        collections.Collection.from_dict({"name": "x", "members": [{"dataset": "fer"}], "contemt": "drop"})
    with pytest.raises(InvalidInput, match=r"contempt must be keep, drop or a label.*not 'dorp' \(did you mean 'drop'"):
        collections.define("x", "fer,ckplus", contempt="dorp")
    with pytest.raises(InvalidInput, match="members name fer twice"):
        collections.define("x", "fer,fer")
    with pytest.raises(InvalidInput, match="cannot be its own member"):
        collections.define("x", "fer,x")
    with pytest.raises(InvalidInput, match=r"members\[0\].dataset 'Bad/Name' is not a valid name"):
        collections.define("x", "Bad/Name")
    with pytest.raises(InvalidInput, match="not among the members"):
        collections.define("x", "fer", {"ckplus": "raw"})
    with pytest.raises(InvalidInput, match="is not MEMBER=RECIPE"):
        collections.parse_recipe_args(["ckplus"])
    with pytest.raises(InvalidInput, match="'fer' is an imported dataset .* not a collection"):
        collections.create("fer", ["ckplus"], cache=cache)
    with pytest.raises(DatasetError, match="No collection named 'nope'"):
        collections.build("nope", cache)
    with pytest.raises(DatasetError, match="no saved recipe 'nope'"):
        collections.member_share(collections.Member("ckplus", "nope"), cache)
    # a label outside the taxonomy, contempt by choice: a listed reason per image, never an exception
    assert collections._label_in("bored", "keep") == (None, "label 'bored' is outside the taxonomy "
                                                            "(angry, disgust, fear, happy, sad, surprise, neutral, contempt)")
    assert collections._label_in("contempt", "neutral") == ("neutral", "")
    assert list(collections.resolve_copies(np.array(["train", "test", "val"]), np.array(["test", "train", "val"]))) \
        == [True, False, False]


def test_the_cli_creates_lists_shows_and_decide_export_train_accept_a_collection(base, tmp_path, capsys):
    cache = _copy(base, tmp_path)
    c = ["--cache", str(cache), "--quiet"]
    assert cli.main(c + ["collection", "create", "duo", "--members", "fer,ckplus", "--recipe", "fer=raw",
                         "--contempt", "drop"]) == 0
    out = capsys.readouterr().out
    assert "duo: " in out and "source" in out and "ckplus         test" in out
    assert cli.main(c + ["collection", "list"]) == 0
    assert "duo" in capsys.readouterr().out
    assert cli.main(c + ["collection", "show", "duo", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["stale"] == [] and st["record"]["counts"]["ckplus"]["test"]
    assert cli.main(c + ["scan", "duo"]) == 0
    assert cli.main(c + ["decide", "duo"]) == 0
    assert cli.main(c + ["export", "duo", "--out", str(tmp_path / "exp")]) == 0
    m = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert [x["dataset"] for x in m["collection"]["members"]] == ["fer", "ckplus"]
    assert m["collection"]["members"][0]["recipe"] == "raw" and m["collection"]["members"][1]["recipe_dict"]
    assert m["collection"]["counts"] == st["record"]["counts"]
    # the export keeps the members' originals: FER's JPGs byte for byte, CK+'s PNGs (the collection holds 48×48)
    assert m["collection"]["images"] == "the members' original files"
    files = [p for p in (tmp_path / "exp").rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert {p.suffix for p in files} == {".jpg", ".png"}
    fer_ds = datasets.load("fer", cache)
    fer_path = fer_ds.catalog.set_index("id")["path"]
    ck_ds = datasets.load("ckplus", cache)
    ck_path = ck_ds.catalog.set_index("id")["path"]
    jpgs = [p for p in files if p.suffix == ".jpg"]           # named by the member's image id
    pngs = [p for p in files if p.suffix == ".png"]
    assert len(jpgs) + len(pngs) == m["counts"]["after_total"] and jpgs and pngs
    assert all(p.read_bytes() == fer_ds.image_path(fer_path[p.stem]).read_bytes() for p in jpgs)
    assert all(p.read_bytes() == ck_ds.image_path(ck_path[p.stem]).read_bytes() for p in pngs)
    capsys.readouterr()
    # train on the collection (smoke), evaluated on its own test split and on a member's
    from fer_core.train import runner

    # (ckplus:test is CK+'s stored subject split: the yardstick reads the split a person assigned)
    met = runner.train("duo", preset="smoke", seed=0, cache=cache, epochs=1, eval_on=["fer:test", "ckplus:test"])
    dcat = datasets.load("duo", cache).catalog
    assert met["test"]["n"] == int((dcat["split"] == "test").sum())
    assert set(dcat.loc[dcat["split"] == "test", "usage"]) == {"fer", "ckplus"}
    fcat = datasets.load("fer", cache).catalog
    assert met["yardsticks"]["fer:test"]["images"] == int((fcat["split"] == "test").sum())
    from fer_core import splits

    ck = datasets.load("ckplus", cache)
    ck_test = int((splits.apply(ck, ck.catalog)["split"] == "test").sum())
    yck = met["yardsticks"]["ckplus:test"]
    assert yck["images"] == ck_test > 0
    assert yck["set_aside"]["unseen_class"].get("contempt", 0) > 0        # dropped from the collection: unseen
    # the build linked each member to the collection image by image: the leakage-aware figure exists, and a
    # member test image is never in the collection's training split (the member's split is kept)
    assert "through the link to duo" in yck["leakage"] and yck["test_without_leaked"] is not None
    assert yck["test_leaked_images"] == 0
    from fer_core import links as links_mod

    assert links_mod.status("duo", "ckplus", cache)["how"] == "collection index"
    # the job starter the Datasets page uses parses with the CLI's own parser
    spec = jobs.collection_job("duo", ("fer", "ckplus"), {"fer": "raw"}, "drop")
    ns = cli.build_parser().parse_args(list(spec.argv))
    assert ns.fn.__name__ == "cmd_collection" and ns.action == "create" and ns.recipe == ["fer=raw"]
    assert spec.exclusive == "dataset-duo"
    ns = cli.build_parser().parse_args(list(jobs.collection_job("duo").argv))
    assert ns.action == "build" and ns.name == "duo"


def test_the_collection_reader_refuses_a_folder_without_its_index(tmp_path):
    from fer_core.sources.collection import read_collection

    write_tree(tmp_path / "c", {"fer/train/happy/a.png": encode(np.zeros((48, 48), np.uint8))})
    with pytest.raises(InvalidInput, match="index.csv"):
        list(read_collection(tmp_path / "c"))
    (tmp_path / "c" / "index.csv").write_text("path,member,member_id,split,label,label_member,problem\n"
                                              "fer/train/happy/a.png,fer,a,train,happy,happy,\n"
                                              "../x/y/z.png,fer,b,train,happy,happy,\n"
                                              "fer/test/sad/b.png,fer,b,test,sad,sad,\n")
    recs = {r.path: r for r in read_collection(tmp_path / "c")}
    assert recs["fer/train/happy/a.png"].problem == "" and recs["fer/train/happy/a.png"].usage == "fer"
    assert "not a path inside" in recs["index.csv:3"].problem
    assert recs["fer/test/sad/b.png"].problem == "image missing from the build"
    assert pd.notna(recs["fer/train/happy/a.png"].label)


def test_the_datasets_page_lists_collections_with_their_counts_and_state(built, monkeypatch):
    from conftest import app_page

    monkeypatch.setenv("FER_CACHE_DIR", str(built["cache"]))
    at = app_page("pages/1_Datasets.py")
    frames = [d.value for d in at.dataframe]
    listing = next(f for f in frames if "collection" in f.columns)
    row = listing[listing["collection"] == "mix"].iloc[0]
    assert row["state"] == "up to date" and row["images"] == built["res"].record["images"]
    assert "ckplus (default)" in row["members"] and "fer (raw)" in row["members"]
    counts = next(f for f in frames if "source" in f.columns and "split" in f.columns)
    assert int(counts["total"].sum()) == built["res"].record["images"]
    assert "mix" not in at.multiselect(key="col_members").options      # a collection is no member candidate here
