"""Splits where a dataset has none (issue 18), on the real CK+ copy: stratified by label, grouped by subject,
deterministic for a seed, stored, applied where the split is read, never over an official split."""

from __future__ import annotations

import re
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, _missing_data, import_and_scan
from fer_core import cli, datasets, decisions, splits, store
from fer_core.errors import InvalidInput

CK_ZIP = (ROOT.parent / "shared" / "datasets" / "ckplus" / "archive.zip").resolve()
NAME_RE = re.compile(r"S(\d+)_(\d+)_\d+\.png$")


@pytest.fixture(scope="module")
def ck_cache(ckplus_scanned):
    """The real CK+ imported and scanned (conftest's session cache; tests that write copy it)."""
    return ckplus_scanned


@pytest.fixture
def ck(ck_cache, tmp_path):
    """A private copy of the module's CK+ cache (a split is written into it)."""
    mine = tmp_path / "ck"
    shutil.copytree(ck_cache, mine, symlinks=True)
    for lk in (mine / "datasets" / "ckplus").glob(".lock*"):
        lk.unlink()
    return mine


def _subject(path: str) -> str:
    return "S" + NAME_RE.search(path).group(1)


def test_subject_split_keeps_every_subject_on_one_side(ck):
    ds = datasets.load("ckplus", ck)
    chash = ds.meta["catalog_hash"]
    d = splits.make("ckplus", by="subject", seed=0, cache=ck)
    cat = ds.catalog
    assert set(cat["split"]) == {"train"}                                   # the import is unchanged
    a = splits.assign(cat, "ckplus", "subject", 0)
    subj = cat.set_index("id").loc[a["id"], "path"].map(_subject).to_numpy()
    per = pd.DataFrame({"split": a["split"].to_numpy(), "subject": subj})
    # 0 subjects in two splits, from the file names read here (not from the module's own parse)
    assert (per.groupby("subject")["split"].nunique() == 1).all()
    assert per["subject"].nunique() == 118
    assert d["subjects_in_two_splits"] == 0 and sum(d["subjects"].values()) == 118
    # stratified: every label in train, and in each split near its share of the label
    labels = set(cat["label"])
    assert set(d["counts"]["train"]) == labels and all(v > 0 for v in d["counts"]["train"].values())
    assert set(d["counts"]) == {"train", "val", "test"}
    sizes = {s: sum(v.values()) for s, v in d["counts"].items()}
    assert sum(sizes.values()) == len(cat) == 981
    assert abs(sizes["train"] / 981 - 0.8) < 0.05 and min(sizes["val"], sizes["test"]) > 0.05 * 981
    for lab in labels:
        n = int((cat["label"] == lab).sum())
        assert abs(d["counts"]["train"][lab] / n - 0.8) < 0.15, lab
    # applying it never changes the catalog (its hash, so every signal table, stays valid)
    assert datasets.load("ckplus", ck).meta["catalog_hash"] == chash
    assert store.family_status("ckplus", ck)["duplicates"]["complete"]


def test_deterministic_for_a_seed_and_another_seed_differs(ck):
    cat = datasets.load("ckplus", ck).catalog
    a0 = splits.assign(cat, "ckplus", "subject", seed=0)
    assert a0.equals(splits.assign(cat.sample(frac=1, random_state=3), "ckplus", "subject", seed=0))
    a1 = splits.assign(cat, "ckplus", "subject", seed=1)
    assert (a0["split"] != a1["split"]).sum() > 50
    # stored and changeable: a second make replaces the first
    splits.make("ckplus", seed=0, cache=ck)
    first = splits.describe("ckplus", ck)
    splits.make("ckplus", seed=1, ratios="0.7,0.15,0.15", cache=ck)
    second = splits.describe("ckplus", ck)
    assert (first["seed"], second["seed"]) == (0, 1) and second["ratios"] == [0.7, 0.15, 0.15]
    assert first["counts"] != second["counts"]
    # by none: stratified, not grouped, said plainly
    splits.make("ckplus", by="none", cache=ck)
    d = splits.describe("ckplus", ck)
    assert d["subjects"] is None and d["subjects_in_two_splits"] is None
    assert "may appear in two splits" in splits.format_description("ckplus", d)


def test_decide_and_training_read_the_assignment(ck, tmp_path, capsys):
    assert cli.main(["--cache", str(ck), "split", "ckplus", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "subjects in two splits: 0" in out and "seed 2" in out
    doc = splits.load(datasets.load("ckplus", ck))
    assert cli.main(["--cache", str(ck), "decide", "ckplus", "--out", str(tmp_path / "d.csv")]) == 0
    table = pd.read_csv(tmp_path / "d.csv")
    assert set(table["split"]) == {"train", "val", "test"}
    assert (table["split"] == table["id"].map(doc["split"])).all()          # the decisions file shows it
    # leakage works across the new splits: no copy of a val/test image left in train (subjects never straddle)
    inputs = decisions.load_inputs("ckplus", ck)
    assert inputs.signals.attrs["split_assignment"]["seed"] == 2
    dec = decisions.run(inputs, __import__("fer_core").recipe.default_recipe(inputs.signals))
    assert not dec["eval_leaked"].any()
    # the scope (train) now leaves val/test untouched
    assert dec.loc[inputs.signals["split"].to_numpy() != "train", "keep"].all()
    # training reads it too: the test set of a run is the assigned test split
    from fer_core.train import data

    td = data.assemble("ckplus", "raw", cache=ck)
    assert sorted(td.test.ids) == sorted(k for k, v in doc["split"].items() if v == "test")
    assert len(td.train) + len(td.val) + len(td.test) == 981
    # removed: back to the import's split
    assert cli.main(["--cache", str(ck), "split", "ckplus", "--clear"]) == 0
    assert set(decisions.load_inputs("ckplus", ck).signals["split"]) == {"train"}


def test_official_splits_are_never_overridden(tmp_path, fer_sample, capsys):
    import_and_scan(tmp_path, dict(list(fer_sample.items())[::10]), "fersmall", scan=False)
    with pytest.raises(InvalidInput, match="official split"):
        splits.make("fersmall")
    assert cli.main(["split", "fersmall"]) == 1
    err = capsys.readouterr().err
    assert "never overridden" in err and "Traceback" not in err
    assert not datasets.load("fersmall").paths.split_assignment.exists()


def test_a_file_name_that_breaks_the_pattern_is_listed(tmp_path, capsys):
    if not CK_ZIP.exists():
        _missing_data(f"real CK+ archive not found at {CK_ZIP}")
    with zipfile.ZipFile(CK_ZIP) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith("CK+48/") and n.endswith(".png"))[:30]
        files = {n: zf.read(n) for n in names}
    files["CK+48/anger/frame_0001.png"] = files[names[0]][:-1] + b"\0"  # a different file (content) too
    files["CK+48/happy/S999.png"] = files[names[1]]
    import_and_scan(tmp_path, files, "ckbad", scan=False)
    assert datasets.load("ckbad").meta["spec"] == "ckplus"
    with pytest.raises(InvalidInput) as exc:
        splits.make("ckbad")
    assert "frame_0001.png" in exc.value.message and "S999.png" in exc.value.message
    assert "2 file name(s)" in exc.value.message and "--by none" in exc.value.hint
    assert cli.main(["split", "ckbad"]) == 1
    err = capsys.readouterr().err
    assert "frame_0001.png" in err and "Traceback" not in err
    # without grouping it splits (and says people may straddle)
    assert cli.main(["split", "ckbad", "--by", "none"]) == 0
    assert "may appear in two splits" in capsys.readouterr().out


def test_unavailable_grouping_and_bad_ratios_are_clear(ck, capsys):
    # identity clusters need the face embeddings, which this cache has not computed
    assert cli.main(["--cache", str(ck), "split", "ckplus", "--by", "identity"]) == 1
    err = capsys.readouterr().err
    assert "needs its face embeddings" in err and "--signals faces,embeddings" in err
    assert cli.main(["--cache", str(ck), "split", "ckplus", "--by", "subject", "--threshold", "0.5"]) == 1
    assert "only applies to --by identity" in capsys.readouterr().err
    for bad in ("0.8,0.1", "0.5,0.5,0.5", "0,0.5,0.5", "a,b,c"):
        assert cli.main(["--cache", str(ck), "split", "ckplus", "--ratios", bad]) == 1
        assert "sum to 1" in capsys.readouterr().err
    assert not datasets.load("ckplus", ck).paths.split_assignment.exists()


def test_greedy_assign_keeps_groups_whole():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 500)
    labels = rng.choice(list("abcde"), 500)
    s = splits.greedy_assign(groups, labels, (0.6, 0.2, 0.2), seed=5)
    assert (pd.Series(s).groupby(groups).nunique() == 1).all()
    assert set(s) == {0, 1, 2} and abs((s == 0).mean() - 0.6) < 0.1
    assert (splits.greedy_assign(groups, labels, (1.0, 0.0, 0.0), seed=5) == 0).all()


def test_datasets_page_shows_the_assignment(tmp_path, monkeypatch):
    if not CK_ZIP.exists():
        _missing_data(f"real CK+ archive not found at {CK_ZIP}")
    from conftest import app_page

    datasets.import_dataset(CK_ZIP, "ckplus")
    at = app_page("pages/1_Datasets.py")
    assert any(m.value.startswith("**Split assignment**") for m in at.markdown)
    assert at.radio(key="split_by_ckplus").value == "subject"     # CK+ names its subjects: the default grouping
    btn = next(b for b in at.button if b.label == "Split")
    btn.click()
    at.run()
    assert not at.exception, at.exception
    assert splits.describe("ckplus")["subjects_in_two_splits"] == 0
    assert any("Split by **subject**, seed 0" in c.value for c in at.caption)
    assert any(c.value == "Subjects in two splits: 0" for c in at.caption)


def test_cluster_identities_joins_each_person_and_keeps_unembedded_alone():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 128))
    v = np.concatenate([c + rng.normal(scale=0.08, size=(20, 128)) for c in centres])   # 3 people, 20 faces each
    v = np.concatenate([v, np.full((2, 128), np.nan), np.zeros((1, 128))])             # no embedding: alone
    v[:60] /= np.linalg.norm(v[:60], axis=1, keepdims=True)
    cl = splits.cluster_identities(v)
    truth = np.repeat([0, 1, 2], 20)
    assert (pd.Series(cl[:60]).groupby(truth).nunique() == 1).all()          # each person in one cluster
    assert len(set(cl[:60])) == 3                                            # and three different clusters
    assert len(set(cl[60:])) == 3 and not set(cl[60:]) & set(cl[:60])        # the three without a vector: alone
    # a threshold above any real similarity splits every face apart; below any, joins them
    assert len(set(splits.cluster_identities(v[:60], 0.999))) == 60
    assert len(set(splits.cluster_identities(v[:60], 0.01))) <= 3
    for bad in (0, 1, 1.5, -0.2, "x", float("nan")):
        with pytest.raises(InvalidInput, match="not a cosine similarity"):
            splits.cluster_identities(v[:60], bad)


def test_identity_clusters_above_the_size_limit_are_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(splits, "IDENTITY_MAX", 50)
    v = np.random.default_rng(1).normal(size=(60, 128))
    with pytest.raises(InvalidInput, match="up to 50 faces") as e:
        splits.cluster_identities(v)
    assert "--by none" in e.value.hint
    v[:15] = np.nan                                  # 45 with an embedding: within the limit
    assert len(splits.cluster_identities(v)) == 60


def test_identity_split_keeps_real_ckplus_subjects_apart(ckplus_embedded, tmp_path, capsys):
    """CK+ names its subjects, so the identity clusters (from the face embeddings alone) can be checked against
    them: a split by identity clusters should straddle (almost) no real subject, where no grouping straddles most."""
    ck = tmp_path / "ck"
    shutil.copytree(ckplus_embedded, ck, symlinks=True)
    for lk in (ck / "datasets" / "ckplus").glob(".lock*"):
        lk.unlink()
    assert cli.main(["--cache", str(ck), "split", "ckplus", "--by", "identity", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "identity clusters:" in out and "cosine ≥ 0.363" in out and "identity clusters in two splits: 0" in out
    ds = datasets.load("ckplus", ck)
    d = splits.describe("ckplus", ck)
    assert d["by"] == "identity" and d["identity"]["threshold"] == splits.IDENTITY_THRESHOLD
    assert d["identity"]["without_embedding"] == 0 and d["subjects_in_two_splits"] == 0
    assert 60 <= d["identity"]["clusters"] <= 160          # 118 real subjects (measured: 92 at 0.363)
    doc = splits.load(ds)
    cat = ds.catalog
    real = pd.DataFrame({"subject": cat["path"].map(_subject), "split": cat["id"].map(doc["split"])})
    straddle = int((real.groupby("subject")["split"].nunique() > 1).sum())
    assert straddle <= 3, straddle                         # measured 0 of 118
    sizes = real["split"].value_counts()
    assert abs(sizes["train"] / len(cat) - 0.8) < 0.07 and sizes.get("test", 0) > 0.05 * len(cat)
    # the same seed without grouping puts most real subjects on two sides
    none = splits.assign(cat, "ckplus", "none", 0)
    real_none = pd.DataFrame({"subject": cat.set_index("id").loc[none["id"], "path"].map(_subject).to_numpy(),
                              "split": none["split"].to_numpy()})
    assert (real_none.groupby("subject")["split"].nunique() > 1).sum() > 60
    # the same-person pairs shown on the Duplicates page follow the assigned split: under the identity split
    # far fewer of them cross train ↔ val/test than under no grouping
    from fer_core.signals.embeddings import cross_split_pairs
    idp = store.load_derived(ds, "embeddings", "identity")
    ids = np.sort(cat["id"].to_numpy())
    by_identity = cross_split_pairs(idp, ids, pd.Series(ids).map(doc["split"]).to_numpy())
    by_none = cross_split_pairs(idp, ids, none.set_index("id").loc[ids, "split"].to_numpy())
    assert len(idp) > 500 and len(by_none) > 5 * max(len(by_identity), 1), (len(idp), len(by_none), len(by_identity))
    # a higher threshold makes more, smaller clusters; the figure is stored with the assignment
    tighter = splits.make("ckplus", by="identity", seed=0, threshold=0.5, cache=ck)
    assert tighter["identity"]["threshold"] == 0.5 and tighter["identity"]["clusters"] > d["identity"]["clusters"]


def test_pages_see_a_split_made_outside_them(ck, monkeypatch):
    """The curation pages cache their inputs by a stamp; a split made from the CLI (or another session) changes
    the stamp, so the pages read the new split instead of the one they cached."""
    monkeypatch.setenv("FER_CACHE_DIR", str(ck))
    from ui.curation import _load_inputs, scan_stamp

    before = scan_stamp("ckplus")
    assert set(_load_inputs("ckplus", before).signals["split"]) == {"train"}
    assert cli.main(["--cache", str(ck), "split", "ckplus", "--by", "subject"]) == 0
    after = scan_stamp("ckplus")
    assert after != before
    assert set(_load_inputs("ckplus", after).signals["split"]) == {"train", "val", "test"}
    assert cli.main(["--cache", str(ck), "split", "ckplus", "--clear"]) == 0
    assert scan_stamp("ckplus") == before          # back to the import's split: the first cached inputs again


def test_datasets_page_splits_by_identity_with_the_threshold_shown(ckplus_embedded, tmp_path, monkeypatch):
    from conftest import app_page

    ck = tmp_path / "ck"
    shutil.copytree(ckplus_embedded, ck, symlinks=True)
    for lk in (ck / "datasets" / "ckplus").glob(".lock*"):
        lk.unlink()
    monkeypatch.setenv("FER_CACHE_DIR", str(ck))
    at = app_page("pages/1_Datasets.py")
    assert [o.split(" (")[0] for o in at.radio(key="split_by_ckplus").options] == ["subject", "identity clusters",
                                                                                    "no grouping"]
    at.radio(key="split_by_ckplus").set_value("identity").run()
    thr = at.number_input(key="split_thr_ckplus")
    assert thr.value == pytest.approx(splits.IDENTITY_THRESHOLD)
    thr.set_value(0.45).run()
    assert any("--by identity" in c.value and "--threshold 0.45" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Split").click().run()
    assert not at.exception, at.exception
    d = splits.describe("ckplus", ck)
    assert d["by"] == "identity" and d["identity"]["threshold"] == 0.45
    assert any("identity clusters at cosine ≥ 0.45" in c.value and "Clusters in two splits: 0" in c.value
               for c in at.caption)
