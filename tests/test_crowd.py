"""Issue 17: FER+ as a dataset (reader, crowd votes as signals), links between datasets holding the same faces,
the crowd in the recipe, evaluation on another dataset's test split, and the A/B's control and crowd arms.

Two scales: the real FER+ copy linked to the real FER2013 (every FER+ image finds its FER2013 JPG), and a small
FER+-layout dataset built from real FER2013 JPGs (as PNGs, like Microsoft's tools make them) with chosen votes,
where every case (bad rows, a stale link, an unseen class, a leaked test image) is known in advance."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, _missing_data, decode_gray
from fer_core import crowd, datasets, links, store
from fer_core.errors import DatasetError, InvalidInput
from fer_core.sources import ferplus

FERPLUS_ZIP = (ROOT.parent / "shared" / "datasets" / "ferplus" / "archive.zip").resolve()
HEADER = "Image name,Box," + ",".join(ferplus.VOTE_COLUMNS)
COL = {c: i for i, c in enumerate(ferplus.VOTE_COLUMNS)}
TO_VOTE = {v: k for k, v in ferplus.EXPRESSION.items()}     # taxonomy label -> vote column


def _votes(**kw) -> list[int]:
    v = [0] * len(ferplus.VOTE_COLUMNS)
    for k, n in kw.items():
        v[COL[k]] = n
    return v


def _row(name: str, votes: list[int]) -> str:
    return f'{name},"(0, 0, 48, 48)",' + ",".join(map(str, votes))


# ---- a small FER+-layout dataset from real FER2013 images ---------------------------------------------------------

@pytest.fixture(scope="module")
def mini(fer_sample, tmp_path_factory):
    """fer2013-mini: real FER2013 JPGs (all three splits); ferplus-mini: its train and PrivateTest pictures as PNGs
    with votes.

    Votes: each image's own label 8 + neutral 2 ("agrees"), except — train: 10 images voted for another class
    ("disagrees"), 5 ties, 3 unknown majorities, 2 contempt majorities; test: 4 ties, 3 contempt majorities (a
    class the FER2013 model never saw), and 2 test PNGs that are FER2013 *training* pictures (leaked)."""
    root = tmp_path_factory.mktemp("crowd-mini")
    cache = root / "cache"
    train = [n for n in fer_sample if n.startswith("train/")]
    test = [n for n in fer_sample if "/PrivateTest_" in n]
    f13 = root / "f13"
    for n in fer_sample:
        p = f13 / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(fer_sample[n])
    fp = root / "fp" / "data"
    truth = {}
    rows = {"FER2013Train": [HEADER], "FER2013Test": [HEADER]}
    other = {"angry": "happy", "happy": "sad", "sad": "angry", "fear": "surprise", "surprise": "fear",
             "disgust": "angry", "neutral": "happy"}
    k = 0
    for i, n in enumerate(train + test + train[-2:]):
        folder = "FER2013Train" if i < len(train) else "FER2013Test"
        label = n.split("/")[1]
        j = i if i < len(train) else i - len(train)
        if folder == "FER2013Train":
            kind = ("disagree" if j < 10 else "tie" if j < 15 else "unknown" if j < 18 else "contempt" if j < 20
                    else "agree")
        else:
            kind = ("tie" if j < 4 else "contempt" if j < 7 else "leak" if i >= len(train) + len(test) else "agree")
        col = TO_VOTE[label]
        v = {"agree": _votes(**{col: 8, "neutral": 2}) if col != "neutral" else _votes(neutral=9, happiness=1),
             "leak": _votes(**{col: 8, "neutral": 2}) if col != "neutral" else _votes(neutral=9, happiness=1),
             "disagree": _votes(**{TO_VOTE[other[label]]: 7, col: 0, "unknown": 3}),
             "tie": _votes(**{col: 4, TO_VOTE[other[label]]: 4, "unknown": 2}),
             "unknown": _votes(unknown=6, **{col: 4}),
             "contempt": _votes(contempt=7, **{col: 3})}[kind]
        name = f"fer{k:07d}.png"
        k += 1
        img = decode_gray(fer_sample[n])
        (fp / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(fp / folder / name), img)
        rows[folder].append(_row(name, v))
        truth[f"{folder}/{name}"] = {"fer2013": n, "kind": kind, "label": label}
    for folder, lines in rows.items():
        (fp / folder / "label.csv").write_text("\n".join(lines) + "\n")
    datasets.import_dataset(f13, "fer2013-mini", spec="fer2013", cache=cache)
    store.scan("fer2013-mini", cache=cache)
    datasets.import_dataset(fp.parent, "ferplus-mini", cache=cache)
    return {"cache": cache, "truth": truth, "fp": fp, "f13": f13}


def _own_copy(mini, tmp_path):
    """A private copy of the module's caches: a test that links, scans or exports never changes what the next
    test starts from."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(mini["cache"], cache, symlinks=True)
    return cache


def test_the_ferplus_layout_is_read_with_its_votes(mini):
    ds = datasets.load("ferplus-mini", mini["cache"])
    assert ds.meta["spec"] == "ferplus"                         # detected from FER2013Train/label.csv
    cat = ds.catalog.set_index("path")
    truth = mini["truth"]
    assert len(cat) == len(truth) and ds.rejected.empty
    assert set(cat["split"]) == {"train", "test"}
    st = store.family_status("ferplus-mini", mini["cache"])["votes"]
    assert st["complete"]
    v = store.load_family(ds, "votes").merge(ds.catalog[["id", "path", "label"]], on="id")
    v["rel"] = v["path"].str.replace("^data/", "", regex=True)
    kinds = v["rel"].map(lambda p: truth[p]["kind"])
    assert (v.loc[kinds == "tie", "crowd_label"] == "tie").all()
    assert (v.loc[kinds == "unknown", "crowd_label"] == "unknown").all()
    assert (v.loc[kinds == "contempt", "label"] == "contempt").all()          # contempt is a class of its own
    agree = kinds.isin(["agree", "leak"])
    assert (v.loc[agree, "crowd_label"] == v.loc[agree, "rel"].map(lambda p: truth[p]["label"])).all()
    # a tie keeps the most-voted expression as its catalog label (taxonomy order breaks the tie), flagged unsure
    tie = v[kinds == "tie"]
    assert tie["label"].isin(ferplus.EXPRESSION.values()).all() and (tie["crowd_given"] == 4).all()


def test_bad_label_files_are_listed_not_raised(tmp_path, fer_sample):
    d = tmp_path / "bad" / "FER2013Train"
    d.mkdir(parents=True)
    jpgs = [n for n in fer_sample if n.startswith("train/")][:6]
    for i, n in enumerate(jpgs):
        cv2.imwrite(str(d / f"fer{i:07d}.png"), decode_gray(fer_sample[n]))
    lines = [HEADER,
             _row("fer0000000.png", _votes(happiness=10)),
             "fer0000001.png,\"(0, 0, 48, 48)\",1,2,3",                         # wrong column count
             _row("fer0000002.png", _votes(happiness=5)).replace(",5,", ",five,", 1),   # not a number
             _row("fer0000003.png", _votes()),                                   # no votes at all
             _row("fer0000099.png", _votes(sadness=10)),                         # its PNG is missing
             _row("fer0000005.png", _votes(NF=10)),                              # no one saw an expression
             ]
    (d / "label.csv").write_text("\n".join(lines) + "\n")                        # fer0000004.png: no row
    res = datasets.import_dataset(tmp_path / "bad", "bad-ferplus", cache=tmp_path / "c")
    assert res.n_images == 1
    why = " | ".join(res.dataset.rejected["reason"])
    for text in ("columns, expected 12", "not a whole number", "no votes", "the file is missing",
                 "no annotator saw an expression", "no row in label.csv"):
        assert text in why, text
    assert len(res.dataset.rejected) == 6
    assert store.family_status("bad-ferplus", tmp_path / "c")["votes"]["complete"]


def test_a_link_pairs_every_picture_and_brings_the_votes_over(mini, tmp_path):
    cache = _own_copy(mini, tmp_path)
    res = links.link("fer2013-mini", "ferplus-mini", cache=cache)
    n_fp = len(datasets.load("ferplus-mini", cache).catalog)
    assert res.a == "fer2013-mini" and res.b_linked == n_fp                       # every FER+ picture found
    pairs = links.load("ferplus-mini", "fer2013-mini", cache)
    f13 = datasets.load("fer2013-mini", cache).catalog.set_index("id")
    fp = datasets.load("ferplus-mini", cache).catalog.set_index("id")
    want = {p.replace("data/", "", 1): t["fer2013"] for p, t in mini["truth"].items()}
    got: dict[str, set] = {}
    for a, b in zip(pairs["ferplus-mini_id"], pairs["fer2013-mini_id"]):
        got.setdefault(fp.loc[a, "path"].replace("data/", "", 1), set()).add(f13.loc[b, "path"])
    assert all(want[k] in got[k] for k in want)                                  # each PNG with its own JPG
    # (and with any copy FER2013 holds of the same picture: the sample has one across train and PrivateTest)
    assert sum(len(v) for v in got.values()) - len(want) <= 4
    assert pairs["mean_diff"].max() <= links.MAX_MEAN
    st = store.family_status("fer2013-mini", cache)["votes"]
    assert st["complete"] and res.votes_written == "fer2013-mini"
    s = store.load_signals("fer2013-mini", cache)
    voted = s["crowd_votes"] > 0
    assert voted.sum() == len(set().union(*got.values()))                          # copies get votes too
    assert (s.loc[~voted, "crowd_label"] == "").all()
    # a disagreeing image: the given label got 0 votes
    dis = [t["fer2013"] for t in mini["truth"].values() if t["kind"] == "disagree"]
    assert (s.set_index("path").loc[dis, "crowd_given"] == 0).all()


def test_a_reimport_rebuilds_the_link_and_a_stale_one_is_refused(mini, monkeypatch, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(mini["cache"], cache, symlinks=True)
    links.link("fer2013-mini", "ferplus-mini", cache=cache)
    # a re-import with one training picture fewer: its links are rebuilt by the import itself
    src = tmp_path / "f13"
    shutil.copytree(mini["f13"], src)
    gone = sorted(src.glob("train/*/*.jpg"))[0]
    gone.unlink()
    datasets.import_dataset(src, "fer2013-mini", spec="fer2013", cache=cache)
    assert links.status("fer2013-mini", "ferplus-mini", cache)["state"] == "ok"
    assert store.family_status("fer2013-mini", cache)["votes"]["complete"]
    # a re-import whose link refresh did not happen (killed in between): stale, said so, and refused
    monkeypatch.setattr(datasets, "AFTER_EVERY_IMPORT", ())
    fp2 = tmp_path / "fp2"
    shutil.copytree(mini["fp"].parent, fp2)
    lab = fp2 / "data" / "FER2013Train" / "label.csv"
    lines = lab.read_text().splitlines()
    (fp2 / "data" / "FER2013Train" / lines[-1].split(",")[0]).unlink()          # one picture fewer, row and PNG
    lab.write_text("\n".join(lines[:-1]) + "\n")
    datasets.import_dataset(fp2, "ferplus-mini", cache=cache)
    st = links.status("fer2013-mini", "ferplus-mini", cache)
    assert st["state"] == "stale" and "re-imported" in st["why"]
    with pytest.raises(DatasetError, match="No usable link"):
        links.load("fer2013-mini", "ferplus-mini", cache)
    vs = store.family_status("fer2013-mini", cache)["votes"]
    assert not vs["complete"] and "re-imported" in vs["stale"]
    assert "crowd_label" not in store.load_signals("fer2013-mini", cache, require=())   # stale votes unused
    assert links.refresh_after_import(datasets.load("ferplus-mini", cache)) == ["fer2013-mini"]
    assert store.family_status("fer2013-mini", cache)["votes"]["complete"]


def test_the_recipe_relabels_to_the_crowd_and_sets_unsure_votes_aside(mini, tmp_path):
    from fer_core.workspace import Workspace

    cache = _own_copy(mini, tmp_path)
    links.link("fer2013-mini", "ferplus-mini", cache=cache)
    ws = Workspace("fer2013-mini", cache)
    base = ws.default_recipe()
    assert base.labels.crowd == "off" and base.labels.crowd_unsure == "keep"   # linked votes change nothing
    assert "crowd" not in base.to_dict()["labels"]                            # nor the recipe's form
    d0 = ws.decide(base)
    rec = base.with_labels(crowd="relabel", crowd_unsure="drop")
    d = ws.decide(rec)
    s = ws.inputs().signals.set_index("path")
    d.index = s.index
    kind = pd.Series({t["fer2013"]: t["kind"] for t in mini["truth"].values() if t["kind"] != "leak"})
    tr = [p for p in kind.index if p.startswith("train/")]
    k = kind[tr]
    dis = k.index[k == "disagree"]
    assert (d.loc[dis, "label_final"] == s.loc[dis, "crowd_label"]).all()
    assert (d.loc[dis, "label_final"] != s.loc[dis, "label"]).all()
    unsure = k.index[k.isin(["tie", "unknown", "contempt"])]                    # contempt: not a FER2013 class
    assert (~d.loc[unsure, "keep"]).all()
    from fer_core import recipe

    assert recipe.has_reason(d.loc[unsure, "reasons"], "crowd").all()
    summ = recipe.summarize(ws.inputs().signals, d.reset_index(drop=True))
    assert summ["crowd"]["relabelled_to_crowd"] == len(dis) and summ["crowd"]["set_aside"] == len(unsure)
    assert dict(recipe.funnel(d.reset_index(drop=True)))["after crowd votes"] < d0["keep"].sum()
    # the test split is never touched by the recipe
    te = [p for p in kind.index if "/PrivateTest_" in p]
    assert d.loc[te, "keep"].all() and (d.loc[te, "label_final"] == s.loc[te, "label"]).all()
    # the export writes relabelled images under the crowd's label and counts them in its manifest
    res = ws.export(rec, "crowd-export")
    assert res.manifest["crowd"] == summ["crowd"]
    for p in dis:                                  # kept, relabelled: under the crowd's label, not the given one
        if d.loc[p, "keep"]:
            name = p.rsplit("/", 1)[1]
            assert (res.path / "train" / d.loc[p, "label_final"] / name).is_file()
            assert not (res.path / "train" / s.loc[p, "label"] / name).exists()


def test_ferplus_own_default_recipe_keeps_unsure_votes_out_of_training(mini, tmp_path):
    from fer_core.workspace import Workspace

    cache = _own_copy(mini, tmp_path)
    store.scan("ferplus-mini", cache=cache)
    ws = Workspace("ferplus-mini", cache)
    rec = ws.default_recipe()
    assert rec.labels.crowd_unsure == "drop"
    d = ws.decide(rec)
    s = ws.inputs().signals
    tie = (s["crowd_label"].isin(["tie", "unknown"]) & (s["split"] == "train")).to_numpy()
    assert tie.sum() == 8 and not d["keep"].to_numpy()[tie].any()
    # contempt is FER+'s own class: kept
    cont = ((s["label"] == "contempt") & (s["split"] == "train")).to_numpy()
    assert cont.sum() == 2 and d["keep"].to_numpy()[cont].all()


def test_random_control_removes_as_many_per_class_at_random():
    from fer_core.train.data import random_control

    rng = np.random.default_rng(1)
    labels = rng.choice(np.array(["a", "b", "c"], dtype=object), size=600)
    split = np.where(np.arange(600) < 500, "train", "val")
    ids = np.array([f"{i:04d}" for i in range(600)], dtype=object)
    train = split == "train"
    kept = train & (rng.random(600) < np.where(labels == "a", 0.5, 0.9))       # the recipe drops half of 'a'
    i1, l1, removed = random_control(ids, labels, train, kept, seed=0)
    for c in "abc":
        assert (l1 == c).sum() == (kept & (labels == c)).sum()
        assert removed[c] == (train & (labels == c)).sum() - (kept & (labels == c)).sum()
    assert set(i1) <= set(ids[train]) and len(set(i1)) == len(i1)
    assert set(i1) != set(ids[kept])                                           # not the recipe's choice
    i2, _, _ = random_control(ids, labels, train, kept, seed=0)
    i3, _, _ = random_control(ids, labels, train, kept, seed=1)
    assert list(i1) == list(i2) and set(i1) != set(i3)                          # seeded
    # training copies of test images (the recipe's leak rejects) go in both arms, never by chance
    forced = train & ~kept & (np.arange(600) % 7 == 0)
    for s_ in range(5):
        i4, l4, _ = random_control(ids, labels, train, kept, seed=s_, forced=forced)
        assert not set(i4) & set(ids[forced])
        assert all((l4 == c).sum() == (kept & (labels == c)).sum() for c in "abc")


def test_a_run_is_evaluated_on_another_datasets_test_split(mini, tmp_path):
    """A smoke run on fer2013-mini evaluated on ferplus-mini's test split: ties set aside, contempt reported as
    a class the model never saw, the two test pictures that are FER2013 training images set aside as leaked;
    then the CLI evaluates the saved model again without retraining, and refuses what it cannot do."""
    import shutil

    from fer_core.train import runner, yardstick

    cache = tmp_path / "cache"
    shutil.copytree(mini["cache"], cache, symlinks=True)
    with pytest.raises(InvalidInput):
        yardstick.parse_target("ferplus-mini:nonsense")
    # a yardstick that cannot judge this model is refused before training, not after it
    with pytest.raises(InvalidInput, match="unknown split"):
        runner.train("fer2013-mini", preset="smoke", seed=0, cache=cache, epochs=1, eval_on=["ferplus-mini:train"])
    only_train = tmp_path / "only-train"
    shutil.copytree(mini["f13"] / "train", only_train / "train")
    datasets.import_dataset(only_train, "no-test", cache=cache)
    with pytest.raises(DatasetError, match="has no test split"):
        runner.train("fer2013-mini", preset="smoke", seed=0, cache=cache, epochs=1, eval_on=["no-test"],
                     run_id="refused")
    assert not (runner.runs_root("fer2013-mini", cache) / "refused" / "history.json").exists()   # before training
    # a crowd recipe without current votes is refused (not linked yet): it would silently do nothing
    from fer_core import decisions
    from fer_core.workspace import Workspace

    crowd_rec = Workspace("fer2013-mini", cache).default_recipe().with_labels(crowd="relabel")
    with pytest.raises(InvalidInput, match="no current votes"):
        decisions.check_crowd(decisions.load_inputs("fer2013-mini", cache), crowd_rec, cache)
    with pytest.raises(InvalidInput, match="no current votes"):
        runner.train("fer2013-mini", "recipe", crowd_rec, preset="smoke", seed=0, cache=cache, epochs=1)
    m = runner.train("fer2013-mini", preset="smoke", seed=0, cache=cache, epochs=1, max_train=None,
                     eval_on=["ferplus-mini:test"])
    # not linked yet: the leakage-aware figure says it cannot be computed, never pretends
    y0 = m["yardsticks"]["ferplus-mini:test"]
    assert y0["test_without_leaked"] is None and "not linked" in y0["leakage"]
    n_test = sum(k.startswith("FER2013Test/") for k in mini["truth"])
    assert y0["images"] == n_test
    assert y0["set_aside"]["crowd_unsure"] == 4
    assert y0["set_aside"]["unseen_class"] == {"contempt": 3}
    assert y0["test"]["n"] == n_test - 7
    links.link("fer2013-mini", "ferplus-mini", cache=cache)
    rdir = runner.run_info("fer2013-mini", m["run_id"], cache)["dir"]
    assert not yardstick.current(rdir, "ferplus-mini:test", "fer2013-mini", cache)   # linked since: stale
    out = subprocess.run([sys.executable, "-m", "fer_core", "--cache", str(cache), "--quiet", "evaluate",
                          m["run_id"], "--on", "ferplus-mini"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ferplus-mini:test" in out.stdout and "classes the model never saw: contempt 3" in out.stdout
    y1 = runner.run_info("fer2013-mini", m["run_id"], cache)["yardsticks"]["ferplus-mini:test"]
    assert yardstick.current(rdir, "ferplus-mini:test", "fer2013-mini", cache)
    arr = yardstick.load(runner.run_info("fer2013-mini", m["run_id"], cache)["dir"], "ferplus-mini:test")[1]
    flagged = set(arr["ids"][arr["leaked"]])
    fp = datasets.load("ferplus-mini", cache).catalog
    designed = set(fp.loc[fp["path"].isin([f"data/{k}" for k, t in mini["truth"].items() if t["kind"] == "leak"]), "id"])
    pairs = links.load("ferplus-mini", "fer2013-mini", cache)
    split13 = datasets.load("fer2013-mini", cache).catalog.set_index("id")["split"]
    direct = set(pairs.loc[(split13.loc[pairs["fer2013-mini_id"]] == "train").to_numpy(), "ferplus-mini_id"])
    direct &= set(arr["ids"])
    assert len(designed) == 2 and designed <= flagged and direct <= flagged     # the sample adds one real copy
    assert y1["test_leaked_images"] == len(flagged) and y1["test_without_leaked"]["n"] == y1["test"]["n"] - len(flagged)
    assert y1["test"]["accuracy"] == pytest.approx(y0["test"]["accuracy"])       # the same saved model
    # the Train page: the runs table and the run's page show every yardstick side by side
    from conftest import app_page

    for r in runner.list_runs("fer2013-mini", cache):   # the refused attempts above left failed runs: the page
        if r["run_id"] != m["run_id"]:                    # shows the newest run first
            assert r["status"]["state"] == "failed" and r["model"] is None
            runner.delete_run("fer2013-mini", r["run_id"], cache)
    at = app_page("pages/7_Train.py", timeout=180)
    frames = [d.value for d in at.dataframe]
    runs = next(f for f in frames if "run" in f.columns and "test acc" in f.columns)
    assert runs.loc[runs["run"] == m["run_id"], "acc. on ferplus-mini:test"].iat[0] == pytest.approx(y1["test"]["accuracy"])
    side = next(f for f in frames if "yardstick" in f.columns)
    assert list(side["yardstick"]) == ["fer2013-mini:test (its own)", "ferplus-mini:test"]
    assert "contempt (class never trained)" in side["set aside"].iat[1]
    bad = subprocess.run([sys.executable, "-m", "fer_core", "--cache", str(cache), "evaluate", m["run_id"],
                          "--on", "no-such-dataset"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "No dataset named 'no-such-dataset'" in bad.stderr and "Traceback" not in bad.stderr


def test_the_ab_trains_a_control_arm_and_pairs_arms_on_every_yardstick(mini, tmp_path):
    import shutil

    from fer_core.train import ab, runner

    cache = tmp_path / "cache"
    shutil.copytree(mini["cache"], cache, symlinks=True)
    links.link("fer2013-mini", "ferplus-mini", cache=cache)
    from fer_core.workspace import Workspace

    rec = Workspace("fer2013-mini", cache).default_recipe()
    with pytest.raises(InvalidInput, match="Unknown A/B arm"):
        ab.run_ab("fer2013-mini", rec, [0], "smoke", cache=cache, arms=["raw", "curatd"], epochs=1)
    doc = ab.run_ab("fer2013-mini", rec, [0], "smoke", cache=cache, arms=["control", "raw", "curated"],
                    ab_id="t-ab", epochs=1)
    assert doc["complete"] and doc["arms"] == ["raw", "curated", "control"]
    assert set(doc["result"]["differences"]) == {"curated", "control", "curated-control"}
    assert doc["result"]["differences"]["curated-control"]["against"] == "control"
    ctl = runner.run_info("fer2013-mini", doc["runs"]["control"][0], cache)["config"]
    cur = runner.run_info("fer2013-mini", doc["runs"]["curated"][0], cache)["config"]
    assert ctl["train_label_counts"] == cur["train_label_counts"]               # same size, same class mix
    assert ctl["source"]["kind"] == "control" and sum(ctl["source"]["control_removed"].values()) > 0
    # resumed with a new yardstick and the crowd arm: finished runs are evaluated, not retrained
    before = set(p.name for p in runner.runs_root("fer2013-mini", cache).iterdir())
    doc2 = ab.run_ab("fer2013-mini", None, [], "smoke", cache=cache, ab_id="t-ab", resume=True,
                     arms=["crowd"], eval_on=["ferplus-mini:test"], epochs=1)
    after = set(p.name for p in runner.runs_root("fer2013-mini", cache).iterdir())
    assert len(after - before) == 1 and doc2["runs"]["crowd"][0] in after - before
    y = doc2["result"]["yardsticks"]["ferplus-mini:test"]
    assert set(y["arms"]) == {"raw", "curated", "control", "crowd"}
    assert all(len(a["runs"]) == 1 for a in y["arms"].values())
    assert "crowd" in y["differences"] and "without_leaked" in y["differences"]["crowd"]
    # how much of the crowd relabel's gain the recipe captures: the ratio of the two paired gains (or why not)
    cap = y["captured"]["curated"]["full"]
    assert set(y["captured"]) == {"curated"} and y["captured"]["curated"]["seeds"] == [0]
    assert cap["gain"] == pytest.approx(y["differences"]["curated"]["full"]["difference"])
    assert cap["reference_gain"] == pytest.approx(y["differences"]["crowd"]["full"]["difference"])
    assert (cap["share"] == pytest.approx(cap["gain"] / cap["reference_gain"])) if cap["share"] is not None \
        else bool(cap["why"])
    # the crowd's gain split: raw moved to the crowd arm's class shares (a prior shift), and what is left
    cp = y["crowd_prior"]
    assert cp["seeds"] == [0] and set(cp["weights"]) == set(runner.run_info("fer2013-mini", doc2["runs"]["raw"][0],
                                                                             cache)["config"]["classes"])
    for which in ("full", "without_leaked"):
        assert cp["prior"][which]["difference"] + cp["beyond"][which]["difference"] == \
            pytest.approx(y["differences"]["crowd"][which]["difference"])
    assert "crowd_prior" not in doc2["result"]          # the dataset's own labels are not the crowd's
    from conftest import app_page                   # the Train page says it beside the verdicts

    at = app_page("pages/7_Train.py", timeout=180)
    caps = [c.value for c in at.caption]
    assert any(c.startswith("**curated against the crowd relabel** (ferplus-mini:test): curated ") for c in caps), caps
    assert any(c.startswith("**The crowd relabel's gain, split** (ferplus-mini:test): Of the crowd relabel's ")
               for c in caps), caps
    crowd_cfg = runner.run_info("fer2013-mini", doc2["runs"]["crowd"][0], cache)["config"]
    assert crowd_cfg["source"]["relabelled"] > 0


def test_label_issue_precision_against_the_crowd():
    rank = np.array([1, 2, 3, 4, np.nan, 5, 6])
    disagree = np.array([True, True, False, True, True, False, False])
    assert crowd.precision_at(rank, disagree, ks=(2, 4, 10)) == {2: 1.0, 4: 0.75, 10: None}
    # on signals: is the model's suggestion or the given label the crowd's majority among the most suspect?
    n = 3000
    rng = np.random.default_rng(0)
    lab = rng.choice(["happy", "sad", "angry"], n)
    crowd_l = np.where(np.arange(n) < 1000, rng.choice(["happy", "sad", "angry"], n), lab)   # the top third: noisy
    sugg = np.where(np.arange(n) < 500, crowd_l, np.where(lab == "happy", "sad", "happy"))  # right on the top 500 only
    sig = pd.DataFrame({"split": "train", "label": lab, "crowd_label": crowd_l, "suggested_label": sugg,
                        "label_rank": np.arange(1, n + 1, dtype=float), "crowd_given": 5})
    sig.loc[2999, "crowd_label"] = "tie"                                       # not usable: left out
    p = crowd.label_issue_precision(sig)
    assert p["images"] == n - 1
    assert p["suggestion_right"]["precision"][500] == 1.0
    assert p["suggestion_right"]["precision"][2000] == pytest.approx(
        (500 + ((sugg == crowd_l)[500:2000]).sum()) / 2000)
    assert p["given_right"]["precision"][500] == pytest.approx((lab == crowd_l)[:500].mean())
    assert p["given_right"]["base_rate"] == pytest.approx(1 - p["not_majority"]["base_rate"])
    assert "suggestion_right" not in crowd.label_issue_precision(sig.drop(columns="suggested_label"))
    # by a score where low is suspect (the label margin): the same figures as by the rank it orders like
    sig["label_margin"] = np.linspace(0.01, 0.99, n)
    pm = crowd.label_issue_precision(sig, by="label_margin")
    assert pm["by"] == "label_margin" and pm["not_majority"] == p["not_majority"]
    sig["label_margin"] = sig["label_margin"].to_numpy()[::-1]                 # reversed: the clean end first
    assert crowd.label_issue_precision(sig, by="label_margin")["suggestion_right"]["precision"][500] < 0.5
    assert crowd.label_issue_precision(sig, by="label_quality") is None       # no such signal


# ---- the real copies ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_linked(fer2013_scanned, tmp_path_factory):
    if not FERPLUS_ZIP.exists():
        _missing_data(f"the real FER+ copy is not at {FERPLUS_ZIP} (../shared missing)")
    src, _ = fer2013_scanned
    cache = tmp_path_factory.mktemp("ferplus-real")
    (cache / "datasets").mkdir()
    subprocess.run(["cp", "-al", str(src / "datasets" / "fer2013"), str(cache / "datasets" / "fer2013")], check=True)
    for lk in (cache / "datasets" / "fer2013").glob(".lock*"):
        lk.unlink()
    res = datasets.import_dataset(FERPLUS_ZIP, "ferplus", cache=cache)
    link = links.link("fer2013", "ferplus", cache=cache)
    return cache, res, link


@pytest.mark.slow
def test_real_ferplus_imports_and_links_every_image_to_its_fer2013_jpg(real_linked):
    cache, res, link = real_linked
    assert res.n_images == 35_708 and res.n_rejected == 2                          # 2: ten votes for NF/unknown
    assert set(res.dataset.rejected["reason"]) == {"no annotator saw an expression (votes: not a face / unknown)"}
    cat = res.dataset.catalog
    assert cat.groupby("split").size().to_dict() == {"train": 28_556, "val": 3_579, "test": 3_573}
    assert link.b_linked == 35_708                                               # every FER+ image paired
    assert link.a_linked == 35_710                                               # FER2013 less FER+'s 177 drops
    pairs = links.load("ferplus", "fer2013", cache)
    assert pairs["median_diff"].median() <= 2 and pairs["mean_diff"].max() <= links.MAX_MEAN
    # each FER+ folder pairs within the same FER2013 usage (beside copies FER2013 holds in other splits)
    fp = res.dataset.catalog.set_index("id")["usage"]
    f13 = datasets.load("fer2013", cache).catalog.set_index("id")["usage"]
    same = fp.loc[pairs["ferplus_id"]].to_numpy() == f13.loc[pairs["fer2013_id"]].to_numpy()
    assert pairs.loc[same, "ferplus_id"].nunique() == 35_708
    # the measured fact of ../shared/datasets/README.md: FER2013's label is the crowd majority for ~65%
    s = store.load_signals("fer2013", cache)
    u = crowd.usable(s)
    for usage in ("Training", "PublicTest", "PrivateTest"):
        m = u & (s["usage"] == usage).to_numpy()
        agree = float((s.loc[m, "label"] == s.loc[m, "crowd_label"]).mean())
        assert 0.63 <= agree <= 0.67, (usage, agree)


def test_soft_targets_are_the_crowds_vote_shares(mini, tmp_path):
    import shutil

    from fer_core.train import data as data_mod, runner

    cache = tmp_path / "cache"
    shutil.copytree(mini["cache"], cache, symlinks=True)
    fp = datasets.load("ferplus-mini", cache)
    cat = fp.catalog.sort_values("id")
    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]   # no contempt: its votes drop out
    ids = cat["id"].to_numpy()
    lab = cat["label"].to_numpy()
    y = np.array([classes.index(x) if x in classes else 0 for x in lab])
    soft, info = data_mod.soft_targets("ferplus-mini", ids, y, classes, cache)
    assert np.allclose(soft.sum(axis=1), 1) and info["one_hot_images"] == 0
    votes = store.load_family(fp, "votes").set_index("id").loc[ids]
    agree = (votes["votes_happiness"] == 8).to_numpy() & (votes["votes_neutral"] == 2).to_numpy()
    assert agree.any() and np.allclose(soft[agree, classes.index("happy")], 0.8)
    cont = (lab == "contempt")
    assert cont.any() and np.allclose(soft[cont].max(axis=1), 1.0)      # contempt 7 dropped, the other 3 remain
    with pytest.raises(InvalidInput, match="need crowd votes"):
        data_mod.soft_targets("fer2013-mini", ids[:3], y[:3], classes, cache)   # not linked in this copy
    # a smoke run on soft labels (FER2013 through the link): trains, and its config says what it trained on
    links.link("fer2013-mini", "ferplus-mini", cache=cache)
    m = runner.train("fer2013-mini", "raw", preset="smoke", seed=0, cache=cache, epochs=1, soft=True)
    cfg = runner.run_info("fer2013-mini", m["run_id"], cache)["config"]
    sv = cfg["source"]["soft"]
    assert sv["soft_images"] > 0 and sv["soft_images"] + sv["one_hot_images"] == cfg["sizes"]["train"]
    assert np.isfinite(runner.run_info("fer2013-mini", m["run_id"], cache)["history"][0]["loss"])


def test_fer2013new_csv_beside_fer2013_csv_gives_each_row_its_votes(tmp_path, fer_sample):
    """The other way FER+ circulates: fer2013new.csv (same rows as fer2013.csv) beside the original. Row 3 was
    dropped by FER+ (empty image name), row 4 is malformed: both without votes; the labels stay FER2013's."""
    from test_import import _fer_csv

    from fer_core.workspace import Workspace

    src = tmp_path / "src"
    src.mkdir()
    sample = dict(list(fer_sample.items())[:12])
    rows = _fer_csv(sample, src / "fer2013.csv")
    lines = ["Usage,Image name," + ",".join(ferplus.VOTE_COLUMNS)]
    for i, (emo, usage, _) in enumerate(rows):
        name = "" if i == 1 else f"fer{i:07d}.png"
        votes = _votes(happiness=6, sadness=4) if i % 2 == 0 else _votes(anger=10)
        line = f"{usage},{name}," + ",".join(map(str, votes))
        lines.append(line if i != 2 else f"{usage},{name},1,2")
    (src / "fer2013new.csv").write_text("\n".join(lines) + "\n")
    res = datasets.import_dataset(src, "fer-csv-votes", cache=tmp_path / "c")
    ds = res.dataset
    assert ds.meta["spec"] == "fer2013-csv"
    st = store.family_status("fer-csv-votes", tmp_path / "c")["votes"]
    assert st["complete"]
    v = store.load_family(ds, "votes").merge(ds.catalog[["id", "path", "label"]], on="id")
    line = v["path"].str.extract(r"_(\d+)\.png$", expand=False).astype(int)
    assert (v.loc[line.isin([3, 4]), "crowd_votes"] == 0).all()                  # dropped and malformed rows
    assert (v.loc[line == 2, "crowd_label"] == "happy").all() and (v.loc[line == 5, "crowd_label"] == "angry").all()
    assert (v["label"] == ds.catalog.set_index("id").loc[v["id"], "label"].to_numpy()).all()   # labels unchanged
    store.scan("fer-csv-votes", cache=tmp_path / "c")
    rec = Workspace("fer-csv-votes", tmp_path / "c").default_recipe()
    assert rec.labels.crowd_unsure == "keep"                 # its labels are FER2013's, not the votes


def test_the_pages_show_the_link_the_votes_and_the_crowd_choice(mini, tmp_path):
    """Duplicates page: the link's state; sidebar: the crowd choice, whose 'set aside' makes a Review queue with
    the crowd's majority on each tile; Quality inspector: the votes of the image looked at."""
    import shutil

    from conftest import app_page

    cache = tmp_path / "cache"            # FER_CACHE_DIR of this test (conftest)
    shutil.copytree(mini["cache"], cache, symlinks=True)
    links.link("fer2013-mini", "ferplus-mini", cache=cache)
    at = app_page("pages/3_Duplicates.py", timeout=180)
    assert at.session_state["dataset"] == "fer2013-mini"
    text = " ".join(m.value for m in at.markdown)
    assert "**ferplus-mini**" in text and "pixel-verified pairs" in text
    unsure = next(c for c in at.checkbox if c.key and c.key.endswith("::crowd_unsure"))
    assert unsure.value is False
    unsure.check()
    at.run()
    assert not at.exception, at.exception
    at.switch_page("pages/4_Review.py")
    at.run()
    at.selectbox(key="rv_reason").select("crowd")
    at.run()
    caps = [c.value for c in at.caption]
    assert any("crowd" in c and ("tie" in c or "unknown" in c or "contempt" in c) for c in caps), caps
    # the inspector, on the Quality page: an image whose given label got no vote
    s = store.load_signals("fer2013-mini", cache)
    iid = s.loc[(s["crowd_given"] == 0) & (s["split"] == "train"), "id"].iat[0]
    at.switch_page("pages/2_Quality.py")
    at.session_state["inspect"] = iid
    at.run()
    assert not at.exception, at.exception
    assert any("crowd (ferplus-mini, 10 votes)" in m.value and "got 0 of 10" in m.value for m in at.markdown)


def test_finished_ab_runs_carry_to_another_machine_without_weights(mini, tmp_path, live_pid):
    """A long A/B whose machine is gone continues elsewhere: its finished runs' figures (no weights) are packed,
    unpacked into another cache of the same import — where the link was built again, so its stamp differs but its
    test set does not — and a resumed A/B trains only what is missing, with the carried figures unchanged. Another
    import, a yardstick whose test set differs, and evaluating a carried run on a new yardstick are refused."""
    import json
    import shutil

    from fer_core.train import ab, carry, runner, yardstick

    here = tmp_path / "here"
    shutil.copytree(mini["cache"], here, symlinks=True)
    links.link("fer2013-mini", "ferplus-mini", cache=here)
    from fer_core.workspace import Workspace

    rec = Workspace("fer2013-mini", here).default_recipe()
    doc = ab.run_ab("fer2013-mini", rec, [0], "smoke", cache=here, arms=["raw", "curated"], ab_id="far",
                    eval_on=["ferplus-mini:test"], epochs=1, budget="steps")
    assert doc["complete"]
    pk = tmp_path / "pack"
    man = carry.pack("fer2013-mini", ["far"], pk, cache=here)
    assert sorted(man["runs"]) == sorted(doc["runs"]["raw"] + doc["runs"]["curated"])
    assert not list(pk.rglob("*.keras")) and not list(pk.rglob("checkpoint*"))
    assert all((pk / "runs" / r / "yardsticks").is_dir() for r in man["runs"])
    one = carry.pack("fer2013-mini", [], tmp_path / "one", cache=here, run_ids=[doc["runs"]["raw"][0]])   # a lone run
    assert one["runs"] == [doc["runs"]["raw"][0]] and one["ab"] == [] and not (tmp_path / "one" / "ab").exists()
    with pytest.raises(InvalidInput, match="has not finished"):
        carry.pack("fer2013-mini", [], tmp_path / "one", cache=here, run_ids=["no-such-run"])

    there = tmp_path / "cache"       # another machine (the pages' FER_CACHE_DIR): the same import, the link built again
    shutil.copytree(mini["cache"], there, symlinks=True)
    links.link("fer2013-mini", "ferplus-mini", cache=there)
    rid = doc["runs"]["curated"][0]
    stored = json.loads((pk / "runs" / rid / "yardsticks" / "ferplus-mini-test.json").read_text())["stamp"]
    out = carry.unpack("fer2013-mini", pk, cache=there)
    assert sorted(out["runs"]) == sorted(man["runs"]) and out["refused"] == [] and out["ab"] == ["far"]
    rdir = runner.run_info("fer2013-mini", rid, there)["dir"]
    assert yardstick.current(rdir, "ferplus-mini:test", "fer2013-mini", there)
    assert stored != yardstick.stamp(yardstick.parse_target("ferplus-mini:test"), "fer2013-mini", there)
    assert runner.run_info("fer2013-mini", rid, there)["status"]["carried"]["weights"] is False
    assert carry.unpack("fer2013-mini", pk, cache=there)["kept"] == sorted(man["runs"])    # never overwritten
    from conftest import app_page                   # the Train page says what a carried run is

    at = app_page("pages/7_Train.py", timeout=180)
    assert any("Carried from another machine" in c.value and "without its weights" in c.value for c in at.caption)
    assert [b.label for b in at.get("download_button")] == ["Download metrics (JSON)"]     # no model to download

    before = {p.name for p in runner.runs_root("fer2013-mini", there).iterdir()}
    doc2 = ab.run_ab("fer2013-mini", None, [], "smoke", cache=there, ab_id="far", resume=True,
                     arms=["control"], epochs=1)
    new = {p.name for p in runner.runs_root("fer2013-mini", there).iterdir()} - before
    assert doc2["complete"] and new == set(doc2["runs"]["control"])          # only the missing arm was trained
    for key in ("differences",):
        assert doc2["result"][key]["curated"]["full"] == doc["result"][key]["curated"]["full"]
    y2, y1 = doc2["result"]["yardsticks"]["ferplus-mini:test"], doc["result"]["yardsticks"]["ferplus-mini:test"]
    assert y2["differences"]["curated"]["full"] == y1["differences"]["curated"]["full"]
    assert "curated-control" in y2["differences"]
    with pytest.raises(InvalidInput, match="carried from another machine without its weights"):
        yardstick.evaluate_run("fer2013-mini", rid, "fer2013-mini:val", there)

    # another import of the dataset: refused whole, nothing written
    other = tmp_path / "pack-other"
    shutil.copytree(pk, other)
    m = json.loads((other / carry.MANIFEST).read_text())
    (other / carry.MANIFEST).write_text(json.dumps({**m, "catalog_hash": "0" * 16}))
    empty = tmp_path / "empty"
    shutil.copytree(mini["cache"], empty, symlinks=True)
    links.link("fer2013-mini", "ferplus-mini", cache=empty)
    with pytest.raises(InvalidInput, match="as imported here"):
        carry.unpack("fer2013-mini", other, cache=empty)
    assert not list(runner.runs_root("fer2013-mini", empty).iterdir())
    with pytest.raises(InvalidInput, match="another dataset or import"):        # nor packed over
        carry.pack("fer2013-mini", ["far"], other, cache=here)
    # an A/B running here is never rewritten under it
    from fer_core.fsutil import process_started
    from fer_core.progress import atomic_write_json

    busy = {**ab.load_ab("fer2013-mini", "far", there), "complete": False, "pid": live_pid.pid,
            "pid_started": process_started(live_pid.pid)}
    atomic_write_json(ab.ab_root("fer2013-mini", there) / "far.json", busy)
    with pytest.raises(InvalidInput, match="is running here"):
        carry.unpack("fer2013-mini", pk, cache=there)
    # a yardstick whose test set differs here (a label changed): that run is refused and left out of the A/B
    shutil.copytree(pk, tmp_path / "pack-bad")
    npz = next((tmp_path / "pack-bad" / "runs" / rid / "yardsticks").glob("*.npz"))
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["y"] = (arrays["y"] + 1) % 7
    np.savez(npz, **arrays)
    out = carry.unpack("fer2013-mini", tmp_path / "pack-bad", cache=empty)
    assert [r for r, _ in out["refused"]] == [rid] and "test set differs" in out["refused"][0][1]
    assert rid not in ab.load_ab("fer2013-mini", "far", empty)["runs"]["curated"]
    # the bench's command line (run as the queue runs it, from outside the repository)
    cmd = [sys.executable, str(ROOT / "bench" / "ab_carry.py"), "--name", "fer2013-mini", "--cache", str(here)]
    r = subprocess.run(cmd + ["pack", "--dir", str(tmp_path / "cli"), "--ab-id", "far"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and f"packed {len(man['runs'])} finished runs (far)" in r.stdout, r.stderr
    r = subprocess.run(cmd + ["unpack", "--dir", str(tmp_path / "nothing")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "holds no packed runs" in r.stderr and "Traceback" not in r.stderr


def test_the_label_issues_tab_says_whether_to_relabel_or_drop():
    """Review → Label issues, where crowd votes exist: how often the suggestion and the given label are the crowd's
    majority among the most suspect images, and which policy that favours."""
    from streamlit.testing.v1 import AppTest

    def page(top_right: int):
        import numpy as np
        import pandas as pd

        from ui.labels_view import crowd_check

        n = 3000
        rng = np.random.default_rng(0)
        lab = rng.choice(["happy", "sad", "angry"], n)
        crowd_l = np.where(np.arange(n) < 1000, np.where(lab == "happy", "sad", "happy"), lab)
        wrong = np.where(crowd_l == "angry", "sad", "angry")            # never the crowd's majority
        sugg = np.where(np.arange(n) < top_right, crowd_l, wrong)
        crowd_check(pd.DataFrame({"split": "train", "label": lab, "crowd_label": crowd_l, "suggested_label": sugg,
                                  "label_rank": np.arange(1, n + 1, dtype=float), "crowd_given": 0}))

    for top_right, says in [(500, "up to the top 1,000; beyond, dropping does"),
                            (0, "no more often right than the given label here: drop, do not relabel")]:
        at = AppTest.from_function(page, args=(top_right,), default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        text = " ".join(m.value for m in at.markdown)
        assert "**Relabel or drop?**" in text and says in text, text
