"""Recipes: YAML round trip, data-derived defaults, deterministic vectorised decide, overrides, policies."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import decode_gray, encode, import_and_scan
from fer_core import decisions, recipe, review, datasets
from fer_core.errors import InvalidInput


@pytest.fixture
def small(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "small")
    return decisions.load_inputs("small")


def test_yaml_round_trip(small, tmp_path):
    r = recipe.default_recipe(small.signals, name="mine")
    r = r.with_filter("sharpness", min=321.5)
    r = r.with_duplicates(near_threshold=6)
    r = r.replace(scope=["train", "val"])
    for suffix in (".yaml", ".json"):
        p = r.save(tmp_path / f"r{suffix}")
        back = recipe.Recipe.load(p)
        assert back.to_dict() == r.to_dict()
        assert back.fingerprint() == r.fingerprint()
        # rounded once, at the source: the untouched defaults in memory are the ones on disk (they differed when
        # saving rounded them), so a recipe decides the same before and after a save
        assert back.filters == r.filters
        assert decisions.run(small, back).equals(decisions.run(small, r))
    with pytest.raises(InvalidInput, match="unknown signal"):
        recipe.Recipe.from_dict({"filters": {"nope": {"min": 1}}})
    with pytest.raises(InvalidInput, match="policy"):
        recipe.Recipe.from_dict({"duplicates": {"policy": "random"}})
    (tmp_path / "bad.yaml").write_text("filters: [unclosed")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        recipe.Recipe.load(tmp_path / "bad.yaml")


def test_defaults_are_derived_from_the_data(tmp_path, fer_sample, small):
    r1 = recipe.default_recipe(small.signals)
    # not the fixed constants used elsewhere (Laplacian 80, brightness 40–220)
    assert r1.filters["sharpness"].min not in (None, 80.0) and r1.filters["sharpness"].min > 80
    assert (r1.filters["brightness"].min, r1.filters["brightness"].max) != (40.0, 220.0)
    # the same faces blurred and brightened: the cut-offs follow the distribution
    import cv2
    shifted = {}
    for n, b in fer_sample.items():
        g = cv2.GaussianBlur(decode_gray(b), (0, 0), 1.2)
        shifted[n.replace(".jpg", ".png")] = encode(np.clip(g.astype(int) + 40, 0, 255).astype(np.uint8))
    import_and_scan(tmp_path, shifted, "shifted")
    r2 = recipe.default_recipe(decisions.load_inputs("shifted").signals)
    assert r2.filters["sharpness"].min < r1.filters["sharpness"].min * 0.5
    assert r2.filters["brightness"].min > r1.filters["brightness"].min + 20
    # provenance is recorded
    assert r2.derived_from["dataset"] == "shifted" and r2.derived_from["images"] > 0


def test_robust_cut_methods():
    rng = np.random.default_rng(0)
    v = rng.lognormal(7.6, 0.5, 10000)
    lo, hi = recipe.robust_cut(v, "low", 4.0, "log")
    assert hi is None and lo == pytest.approx(np.exp(7.6 - 4.0 * 0.5), rel=0.05)  # median − 4σ on the log scale
    zeros = np.concatenate([np.zeros(900), rng.uniform(0, 1, 100)])
    lo, hi = recipe.robust_cut(zeros, "high", 4.0)
    assert hi == pytest.approx(np.percentile(zeros, 99.5))
    lo, hi = recipe.robust_cut(np.full(100, 48.0), "low", 4.0)
    assert lo == 48.0  # constant: nothing below


def test_decide_deterministic_and_matches_thresholds(small):
    r = recipe.default_recipe(small.signals)
    r = r.with_filter("sharpness", min=float(np.percentile(small.signals["sharpness"], 10)))
    d1 = decisions.run(small, r)
    d2 = decisions.run(small, recipe.Recipe.from_dict(r.to_dict()))   # the same recipe, read back
    pd.testing.assert_frame_equal(d1, d2)
    sig = small.signals
    low = (sig["sharpness"] < r.filters["sharpness"].min).to_numpy()
    assert np.array_equal(recipe.has_reason(d1["flags"], "sharpness"), low)
    train = (sig["split"] == "train").to_numpy()
    assert np.array_equal(recipe.has_reason(d1["reasons"], "sharpness"), low & train)
    assert d1.loc[~train, "keep"].all()   # default scope: val/test never rejected
    assert not d1.loc[low & train, "keep"].any()
    # disabling the filter removes the reason
    r = r.with_filter("sharpness", enabled=False)
    assert not recipe.has_reason(decisions.run(small, r)["flags"], "sharpness").any()


def test_overrides_win_within_scope(small):
    r = recipe.default_recipe(small.signals)
    r = r.with_filter("sharpness", min=float(np.percentile(small.signals["sharpness"], 30)))
    d = decisions.run(small, r)
    sig = small.signals
    rejected = sig.loc[~d["keep"], "id"].iloc[0]
    kept_train = sig.loc[d["keep"] & (sig["split"] == "train"), "id"].iloc[0]
    test_img = sig.loc[sig["split"] == "test", "id"].iloc[0]
    rs = review.store_for(datasets.load("small"))
    rs.set(rejected, "keep")
    rs.set(kept_train, "reject")
    rs.set(test_img, "reject")
    rs.set(kept_train if False else sig.loc[d["keep"] & (sig["split"] == "train"), "id"].iloc[1], "relabel", label="fear")
    d2 = decisions.run(small, r, rs.overrides())
    by = d2.set_index(sig["id"])
    assert by.loc[rejected, "keep"] and by.loc[rejected, "override"] == "keep"
    assert not by.loc[kept_train, "keep"] and recipe.has_reason([by.loc[kept_train, "reasons"]], "manual")[0]
    assert by.loc[test_img, "keep"] and by.loc[test_img, "override"] == "reject"  # test stays untouched
    relabelled = sig.loc[d["keep"] & (sig["split"] == "train"), "id"].iloc[1]
    assert by.loc[relabelled, "label_final"] == "fear"
    r = r.replace(scope=["train", "val", "test"])
    assert not decisions.run(small, r, rs.overrides()).set_index(sig["id"]).loc[test_img, "keep"]


def test_duplicate_policy_keeps_exactly_one(tmp_path, fer_sample):
    items = [(n, b) for n, b in fer_sample.items() if n.startswith("train/")][:30]
    files = dict(items)
    for i, (n, b) in enumerate(items[:10]):  # 10 groups of 3 (original + 2 copies)
        g = decode_gray(b)
        files[n.replace(".jpg", "_c1.png")] = encode(g)
        files[n.replace(".jpg", "_c2.jpg")] = encode(np.clip(g.astype(int) + 10, 0, 255).astype(np.uint8), ".jpg", 85)
    import_and_scan(tmp_path, files, "pol")
    inp = decisions.load_inputs("pol")
    r = recipe.default_recipe(inp.signals)
    for c in r.filters:
        r = r.with_filter(c, enabled=False)
    d = decisions.run(inp, r)
    groups = d[d["group"] >= 0].groupby("group")
    assert groups.ngroups == 10 and (groups.size() == 3).all()
    assert (groups["keep"].sum() == 1).all() and (groups["representative"].sum() == 1).all()
    assert (d.loc[d["group"] < 0, "keep"]).all()
    r = r.with_duplicates(policy="drop_all")
    d = decisions.run(inp, r)
    assert not d.loc[d["group"] >= 0, "keep"].any()
    r = r.with_duplicates(policy="keep_all")
    assert decisions.run(inp, r)["keep"].all()
    r = r.with_duplicates(policy="keep_one")
    r = r.replace(scope=["train", "val", "test"])
    r = r.with_duplicates(near=False)  # exact only: the brightened copies fall out of the groups
    d = decisions.run(inp, r)
    assert d[d["group"] >= 0].groupby("group").size().eq(2).all()


def test_summary_counts(small):
    r = recipe.default_recipe(small.signals)
    d = decisions.run(small, r)
    s = recipe.summarize(small.signals, d)
    assert s["kept"] + s["rejected"] == s["images"] == len(small.signals)
    assert sum(v["rejected"] for v in s["by_split"].values()) == s["rejected"]
    assert sum(v["kept"] for v in s["by_label"].values()) == s["kept"]
    assert all(n in recipe.reason_names() for n in s["by_reason"])
    assert "kept" in recipe.format_summary(s)


def test_decide_scales_to_a_million_rows():
    rng = np.random.default_rng(0)
    n = 1_000_000
    sig = pd.DataFrame({"id": np.char.add("id", np.arange(n).astype(str)), "split": rng.choice(["train", "val", "test"], n),
                        "label": rng.choice(["happy", "sad"], n), "sharpness": rng.lognormal(7, 0.6, n),
                        "brightness": rng.normal(128, 30, n)}).sort_values("id").reset_index(drop=True)
    ia = rng.integers(0, n, 20000)
    pairs = recipe.Pairs(ia, np.minimum(ia + 1, n - 1), rng.integers(0, 7, 20000).astype(np.int16),
                         np.ones(20000, np.int8))
    r = recipe.default_recipe(sig)
    d = recipe.decide(sig, r, None, pairs)
    assert len(d) == n and d["keep"].dtype == bool and (d["group"] >= 0).sum() > 10000


def test_summary_warns_when_a_cut_strips_one_class():
    """A cut that removes far more of one class than of the scope is reported (it can make a small class
    vanish from training); an even cut is not."""
    rng = np.random.default_rng(0)
    labels = np.array(["happy"] * 900 + ["disgust"] * 100)
    sig = pd.DataFrame({"id": [f"i{k:05d}" for k in range(1000)], "label": labels, "split": "train"})
    bit = recipe.reason_bit("label_quality")

    def frame(rejected):
        return pd.DataFrame({"in_scope": True, "keep": ~rejected, "reasons": np.where(rejected, bit, 0).astype(np.int64)})

    skewed = np.zeros(1000, bool)
    skewed[rng.choice(900, 20, replace=False)] = True          # 2.2% of happy
    skewed[900:940] = True                                      # 40% of disgust
    w = recipe.class_imbalance(sig, frame(skewed))
    assert len(w) == 1 and w[0]["label"] == "disgust" and w[0]["reason"] == "label_quality"
    assert w[0]["rejected"] == 40 and w[0]["of"] == 100 and w[0]["overall_share"] == pytest.approx(0.06)
    even = rng.random(1000) < 0.06
    assert recipe.class_imbalance(sig, frame(even)) == []
    assert "40% of **disgust**" in recipe.imbalance_text(w[0])


def test_label_cut_is_capped_per_class():
    """label_quality is low for every image of a rare class; the data-derived recipe caps what the label cut
    takes from any one class at 2x its overall share, spares the best-scored flagged images beyond the cap
    (they stay in review), breaks ties by id, and the 1M-row decide stays vectorised."""
    rng = np.random.default_rng(1)
    n_h, n_d = 1900, 100
    labels = np.array(["happy"] * n_h + ["disgust"] * n_d + ["sad"] * 40)
    q = np.concatenate([rng.uniform(0.3, 1.0, n_h), rng.uniform(0.0, 0.4, n_d), np.full(40, 0.9)])
    q[n_h:n_h + 10] = 0.02                                          # ties inside the rare class, across the cap
    split = np.array(["train"] * len(labels), dtype=object)
    split[-40:] = "test"                                            # out of scope: never counted, never capped
    q[-5:] = 0.0
    sig = pd.DataFrame({"id": [f"i{k:05d}" for k in range(len(labels))], "label": labels, "split": split,
                        "label_quality": q})
    r = recipe.default_recipe(sig)
    lq = r.filters["label_quality"]
    train = split == "train"
    overall = (q[train] < lq.min).mean()
    assert r.labels.class_cap == pytest.approx(2 * overall, abs=1e-4)
    d = recipe.decide(sig, r)
    by_lq = recipe.has_reason(d["reasons"], "label_quality")
    dis = labels == "disgust"
    assert (q[dis] < lq.min).mean() > 3 * r.labels.class_cap         # uncapped it would strip disgust
    assert by_lq[dis].sum() == int(np.floor(r.labels.class_cap * dis.sum() + 1e-9))
    capped = d["label_capped"].to_numpy()
    assert capped.any() and not capped[~dis].any() and not capped[~train].any()
    assert q[capped].min() >= q[dis & by_lq].max()                  # the worst stay rejected
    assert recipe.has_reason(d["review"], "label_quality")[capped].all()
    ties = np.flatnonzero(dis & (q == 0.02))
    cut = by_lq[ties]
    assert 0 < cut.sum() < len(ties)                                 # the cap falls inside the tie ...
    assert cut[: cut.sum()].all() and not cut[cut.sum():].any()      # ... and the lower ids are the ones cut
    assert recipe.class_imbalance(sig, d) == []
    s = recipe.summarize(sig, d)
    assert s["label_capped"] == capped.sum() and "spared by the per-class cap" in recipe.format_summary(s)
    # YAML round trip keeps the cap; invalid caps are refused with a clear message
    r2 = recipe.Recipe.from_dict(yaml.safe_load(r.to_yaml()))
    assert r2.labels.class_cap == r.labels.class_cap
    dd = r.to_dict()
    dd["labels"]["class_cap"] = 1.5
    with pytest.raises(InvalidInput, match="class_cap"):
        recipe.Recipe.from_dict(dd)
    dd["labels"]["class_cap"] = "six percent"
    with pytest.raises(InvalidInput, match="labels.class_cap must be a number"):
        recipe.Recipe.from_dict(dd)
    dd["labels"]["class_cap"] = 0.06
    dd["filters"]["label_quality"]["min"] = "low"
    with pytest.raises(InvalidInput, match="filters.label_quality.min must be a number"):
        recipe.Recipe.from_dict(dd)
    # without the cap the whole tail goes, as before
    r = r.with_labels(class_cap=None)
    d2 = recipe.decide(sig, r)
    assert recipe.has_reason(d2["reasons"], "label_quality")[train & (q < lq.min)].all()
    assert recipe.class_imbalance(sig, d2)[0]["label"] == "disgust"


def test_label_margin_a_second_label_cut(monkeypatch):
    """The margin is cleanlab's normalized margin; a table written before it existed gets it on read from its
    stored probabilities; the default recipe keeps cutting on label quality alone (the margin filter is there,
    off); a recipe that cuts on the margin caps it per class by the margin and relabels what it flags; the A/B's
    crowd arm turns every label cut off."""
    from cleanlab.rank import get_label_quality_scores

    from fer_core.signals.labels import Labels, normalized_margin
    from fer_core.train import ab

    rng = np.random.default_rng(3)
    n = 600
    classes = ["angry", "happy", "sad"]
    labels = np.array(["happy"] * 400 + ["sad"] * 150 + ["angry"] * 50)
    y = np.array([classes.index(c) for c in labels])
    p = rng.dirichlet(np.ones(3), n)
    assert np.allclose(normalized_margin(p, y), get_label_quality_scores(y, p, method="normalized_margin"))
    split = np.array(["train"] * (n - 60) + ["test"] * 60, dtype=object)
    table = pd.DataFrame({"id": [f"i{k:04d}" for k in range(n)], "label_quality": p[np.arange(n), y],
                          "suggested_label": np.array(classes, dtype=object)[p.argmax(1)],
                          **{f"p_{c}": p[:, i] for i, c in enumerate(classes)}})
    table.loc[split == "test", [f"p_{c}" for c in classes] + ["label_quality"]] = np.nan
    cat = pd.DataFrame({"id": table["id"], "split": split, "label": labels})
    up = Labels().upgrade(table, cat)
    m = up["label_margin"].to_numpy()
    assert np.allclose(m[split == "train"], normalized_margin(p, y)[split == "train"], atol=1e-5)
    assert np.isnan(m[split == "test"]).all()
    assert Labels().upgrade(up, cat) is up                             # already there: read as stored
    sig = cat.merge(up, on="id")
    d0 = recipe.default_recipe(sig)
    assert d0.label_cut(sig.columns) == "label_quality" and d0.filters["label_quality"].enabled
    assert not d0.filters["label_margin"].enabled and d0.filters["label_margin"].min is not None
    lm = d0.filters["label_margin"]
    train = split == "train"
    share = (m[train] < lm.min).mean()
    assert 0.09 <= share <= 0.11                                       # its data-derived cut: the lowest 10%
    r = d0.with_filter("label_quality", enabled=False).with_filter("label_margin", enabled=True)
    r = r.with_labels(class_cap=round(2 * share, 4))
    assert r.label_cut(sig.columns) == "label_margin"
    d = recipe.decide(sig, r)
    by_m = recipe.has_reason(d["reasons"], "label_margin")
    assert not recipe.has_reason(d["reasons"], "label_quality").any()
    capped = d["label_capped"].to_numpy()
    for c in classes:
        k = train & (labels == c)
        assert by_m[k].sum() <= np.floor(r.labels.class_cap * k.sum() + 1e-9)
        if (k & capped).any():                                         # spared: the best margins of the class
            assert m[k & capped].min() >= m[k & by_m].max()
    assert (by_m | capped)[train & (m < lm.min)].all() and not by_m[~train].any()
    rl = recipe.decide(sig, r.with_labels(policy="relabel", class_cap=None))
    moved = train & (m < lm.min) & (sig["suggested_label"] != sig["label"]).to_numpy()
    assert moved.any() and rl["auto_relabel"].to_numpy()[moved].all()
    assert (rl["label_final"].to_numpy()[moved] == sig["suggested_label"].to_numpy()[moved]).all()
    # both cuts on: either flags; the crowd arm and the "no label cut" ablation turn both off
    both = r.with_filter("label_quality", enabled=True)
    assert recipe.has_reason(recipe.decide(sig, both.with_labels(class_cap=None))["reasons"], "label_quality").any()
    monkeypatch.setattr(ab.store, "family_status",
                        lambda *a, **k: {"labels": {"complete": True}, "votes": {"complete": True}})
    crowd_r = {a: rr for a, _, rr in ab.arms_for("x", both, arms=["crowd"])}["crowd"]
    assert not any(crowd_r.filters[c].enabled for c in recipe.LABEL_CUTS)


# ---- schema: bad recipes are refused with the key path, what is allowed and the closest valid key ----------

@pytest.mark.parametrize("text, expected", [
    ("filter:\n  sharpness: {min: 3}\n", r"unknown key 'filter' \(did you mean 'filters'\?\)"),
    ("filters:\n  sharpness: {mni: 3}\n", r"unknown key 'filters\.sharpness\.mni' \(did you mean 'min'\?\); "
                                          r"allowed there: enabled, min, max, review_min, review_max"),
    ("duplicates: {polcy: drop_all}\n", r"unknown key 'duplicates\.polcy' \(did you mean 'policy'\?\)"),
    ("duplicates: {near_treshold: 3}\n", r"unknown key 'duplicates\.near_treshold' \(did you mean 'near_threshold'\?\)"),
    ("filters:\n  sharpnes: {min: 3}\n", r"filters\.sharpnes: .*unknown signal 'sharpnes' \(did you mean 'sharpness'\?\)"),
    ("filters:\n  sharpness: {enabled: 'false', min: 3}\n", r"filters\.sharpness\.enabled must be true or false"),
    ("filters:\n  sharpness: {min: .nan}\n", r"filters\.sharpness\.min must be a finite number"),
    ("filters:\n  sharpness: {min: .inf}\n", r"filters\.sharpness\.min must be a finite number"),
    ("duplicates: {near_threshold: -3}\n", r"duplicates\.near_threshold must be between 0 and 64, not -3"),
    ("filters:\n  brightness: {max: -5}\n", r"filters\.brightness\.max must be between 0 and 255 .*not -5"),
    ("filters:\n  label_quality: {min: -0.1}\n", r"filters\.label_quality\.min must be between 0 and 1"),
    ("filters:\n  sharpness: 5\n", r"filters\.sharpness must be a mapping .* of enabled, min, max"),
    ("duplicates: {near_threshold: four}\n", r"duplicates\.near_threshold must be a whole number, not 'four'"),
    ("duplicates: {exact: 1}\n", r"duplicates\.exact must be true or false"),
    ("scope: train\n", r"scope must be a list"),
    ("scope: [train, tset]\n", r"scope\[1\] must be one of test, val, train, not 'tset' \(did you mean 'test'\?\)"),
    ("labels: {class_cap: .nan}\n", r"labels\.class_cap must be a finite number"),
    ("- just\n- a list\n", r"must be a mapping"),
])
def test_schema_names_the_file_the_key_and_what_is_allowed(tmp_path, text, expected):
    p = tmp_path / "mine.yaml"
    p.write_text("format: fer-recipe/1\nname: mine\n" + text if not text.startswith("-") else text)
    with pytest.raises(InvalidInput, match=expected) as exc:
        recipe.Recipe.load(p)
    assert "'mine.yaml'" in exc.value.message and exc.value.hint


def test_schema_reports_every_problem_at_once():
    with pytest.raises(InvalidInput) as exc:
        recipe.Recipe.from_dict({"filters": {"sharpness": {"mni": 1, "enabled": "yes"}, "brightness": {"max": -5}},
                                 "duplicates": {"near_threshold": "4"}})
    m = exc.value.message
    assert "The recipe:" in m and "filters.sharpness.mni" in m and "filters.sharpness.enabled" in m
    assert "duplicates.near_threshold" in m and "filters.brightness.max must be between 0 and 255" in m


def test_bad_yaml_syntax_names_the_file_and_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: x\nfilters:\n  sharpness: {min: 3\n  brightness: {}\n")
    with pytest.raises(InvalidInput, match=r"'broken\.yaml' is not valid YAML \(line \d+, column \d+") as exc:
        recipe.Recipe.load(p)
    assert "Unexpected" not in str(exc.value)
    # the app's upload goes through the same parser (bytes, as uploaded)
    with pytest.raises(InvalidInput, match=r"'up\.yaml' is not valid YAML \(line 3, column 1: expected ',' or "
                                           r"'\]'.*, while parsing a flow sequence on line 2\)"):
        recipe.Recipe.from_text(b"name: x\nfilters: [unclosed\n", "up.yaml")
    with pytest.raises(InvalidInput, match=r"'up\.json' is not valid JSON \(line 1, column 2"):
        recipe.Recipe.from_text(b"{name: 1}", "up.json")
    with pytest.raises(InvalidInput, match=r"'up\.yaml' is not UTF-8 text"):
        recipe.Recipe.from_text(b"name: caf\xe9\n", "up.yaml")


# Recipes as earlier versions saved them, with the fingerprints those versions computed: an A/B resumes only
# when the fingerprint of its recipe is unchanged, so validation must not alter a valid recipe in any way.
OLD_RECIPES = {
    "50dcf3f4c8ff06e4": """format: fer-recipe/1
name: strict
scope: [train, val]
filters:
  sharpness: {enabled: true, min: 321.5, max: null, review_min: 400, review_max: null}
  brightness: {enabled: false, min: 12.25, max: 243.0, review_min: null, review_max: null}
  face_score: {enabled: true, min: 0.2, max: null, review_min: 0.5, review_max: null}
duplicates:
  exact: true
  near: true
  near_threshold: 6
  mirror: false
  mirror_threshold: 2
  policy: keep_one
  drop_leaked: true
  prefer: [test, val, train]
  embedding: true
  embed_threshold: 0.8
labels: {policy: relabel}
derived_from: {dataset: fer2013, catalog_hash: abc123, images: 28709}
notes: tuned by hand
""",
    "5305a9be73e04725": """format: fer-recipe/1
name: capped
scope: [train]
filters:
  label_quality: {enabled: true, min: 0.05, max: null, review_min: 0.2, review_max: null}
duplicates: {exact: true, near: true, near_threshold: 4, mirror: false, mirror_threshold: 2, policy: drop_all,
  drop_leaked: false, prefer: [train, val, test], embedding: false, embed_threshold: 1}
labels: {policy: drop, class_cap: 0.0612}
derived_from: {}
""",
    "6f5ff94bc4a70d58": "name: tiny\nfilters: {contrast: {min: 3}}\n",
}


@pytest.mark.parametrize("fp", list(OLD_RECIPES))
def test_old_recipes_load_with_the_same_fingerprint(tmp_path, fp):
    p = tmp_path / "old.yaml"
    p.write_text(OLD_RECIPES[fp])
    r = recipe.Recipe.load(p)
    assert r.fingerprint() == fp
    for suffix in (".yaml", ".json"):
        back = recipe.Recipe.load(r.save(tmp_path / f"again{suffix}"))
        assert back.to_dict() == r.to_dict() and back.fingerprint() == fp


# ---- a recipe that rejects most of a split is flagged (CLI and summary) -----------------------------------

def test_recipe_rejecting_most_of_a_split_warns(small, tmp_path, capsys):
    from fer_core import cli

    r = recipe.default_recipe(small.signals)
    assert recipe.split_rejections(small.signals, decisions.run(small, r)) == []
    r = r.replace(scope=["train", "test"])
    r = r.with_filter("brightness", enabled=True, min=None, max=1.0)   # valid, but on the wrong side
    d = decisions.run(small, r)
    w = {x["split"]: x for x in recipe.split_rejections(small.signals, d)}
    assert set(w) == {"train", "test"}                                    # val is out of scope: untouched
    n_test = int((small.signals["split"] == "test").sum())
    assert w["test"]["of"] == n_test and w["test"]["rejected"] > n_test / 2 and w["test"]["share"] > 0.5
    text = recipe.format_summary(recipe.summarize(small.signals, d))
    assert f"WARNING: The recipe rejects {w['test']['share']:.0%} of the test split" in text
    path = r.save(tmp_path / "dark.yaml")
    assert cli.main(["decide", "small", "--recipe", str(path)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: The recipe rejects" in out and "of the train split" in out and "of the test split" in out
    # a bad recipe in the CLI: a sentence and exit 1, not a traceback
    (tmp_path / "typo.yaml").write_text("filters:\n  sharpness: {mni: 3}\n")
    assert cli.main(["decide", "small", "--recipe", str(tmp_path / "typo.yaml")]) == 1
    err = capsys.readouterr().err
    assert "filters.sharpness.mni" in err and "did you mean 'min'" in err and "Traceback" not in err


# ---- names ---------------------------------------------------------------------------------------------------

def test_check_name_matches_the_whole_name_and_says_what_kind():
    from fer_core.store_paths import check_name

    assert check_name("fer2013") == "fer2013" and check_name("my-recipe_2.v1", "recipe") == "my-recipe_2.v1"
    for bad in ("fer2013\n", "a\nb", "", "Bad", "../x", "a" * 65, None):
        with pytest.raises(InvalidInput, match="not a valid dataset name"):
            check_name(bad)
    with pytest.raises(InvalidInput, match=r"'strict\\n' is not a valid recipe name"):
        check_name("strict\n", "recipe")
    with pytest.raises(InvalidInput, match="not a valid export name"):
        check_name("My Export", "export")


# ---- what the whole recipe removes per class, and the recipe-level per-class cap -------------------------

def test_whole_recipe_removal_is_warned_per_class_and_split():
    """Two cuts that each stay under the one-reason warning add up to 40% of `disgust` (against 10% of the
    split): the whole-recipe check reports it, per split with training first, in the summary and the CLI text."""
    labels = ["happy"] * 900 + ["disgust"] * 100 + ["happy"] * 150 + ["disgust"] * 50
    split = ["train"] * 1000 + ["test"] * 200
    sig = pd.DataFrame({"id": [f"i{k:05d}" for k in range(1200)], "label": labels, "split": split})
    bits = np.zeros(1200, np.int64)
    bits[:60] |= recipe.reason_bit("sharpness")                 # the same 60 happy images fail both cuts ...
    bits[:60] |= recipe.reason_bit("duplicate")
    bits[900:920] |= recipe.reason_bit("sharpness")             # ... while disgust loses 20 to each
    bits[920:940] |= recipe.reason_bit("duplicate")
    bits[1150:1170] |= recipe.reason_bit("sharpness")           # test: 20 of its 50 disgust (scope train+test)
    dec = pd.DataFrame({"in_scope": True, "keep": bits == 0, "reasons": bits, "flags": bits, "override": "",
                        "group": -1, "eval_leaked": False})
    w = recipe.class_removals(sig, dec)
    assert w == [("train", "disgust", 100, 60, 0.4, 0.1), ("test", "disgust", 50, 30, 0.4, 0.1)]
    assert w[0].overall == pytest.approx(0.1) and w[0].share == pytest.approx(0.4)
    train_only = recipe.class_imbalance(pd.DataFrame({c: sig[c][:1000].tolist() for c in sig}), dec[:1000])
    assert train_only == []                                      # one cut at a time sees nothing
    text = recipe.format_summary(recipe.summarize(sig, dec))
    assert ("WARNING: The recipe removes 40.0% of training disgust (100 → 60) against 10.0% of all training "
            "images") in text and "40.0% of test disgust (50 → 30)" in text
    assert text.index("training disgust") < text.index("test disgust")
    # the rule: more than 2x the split's share, more than 10%, at least 10 images
    bits[900:940] = 0
    bits[900:912] = recipe.reason_bit("sharpness")               # 12% of disgust: > 10% but < 2 x 7.2%
    dec = pd.DataFrame({"in_scope": True, "keep": bits == 0, "reasons": bits})
    assert [x.split for x in recipe.class_removals(sig, dec)] == ["test"]


def _capped_fixture():
    """1,000 training images (900 happy, 100 disgust) and 100 test images. Disgust: 8 training copies of test
    images (leak), 4 extra exact copies inside training, and 30 low-sharpness images (12 of them extreme)."""
    rng = np.random.default_rng(3)
    n = 1100
    labels = np.array(["happy"] * 900 + ["disgust"] * 100 + ["happy"] * 50 + ["disgust"] * 50)
    split = np.array(["train"] * 1000 + ["test"] * 100)
    sharp = rng.uniform(200, 400, n)
    sharp[900:930] = np.linspace(10, 99, 30)                     # disgust 900..929 below the cut (100)
    sharp[:10] = 50.0                                            # 10 happy too (1.1% of happy)
    sig = pd.DataFrame({"id": [f"i{k:05d}" for k in range(n)], "label": labels, "split": split, "sharpness": sharp})
    a = list(range(940, 948)) + list(range(950, 954))            # leak: 940..947 ~ test 1050..1057
    b = list(range(1050, 1058)) + list(range(960, 964))          # extra copies: 950..953 ~ 960..963 (train)
    pairs = pd.DataFrame({"a": [f"i{k:05d}" for k in a], "b": [f"i{k:05d}" for k in b], "method": "exact",
                          "distance": 0})
    r = recipe.Recipe(filters={"sharpness": recipe.Filter(min=100.0)})
    return sig, pairs, r


def test_recipe_class_cap_spares_the_least_certain_rejections():
    sig, pairs, r = _capped_fixture()
    d0 = recipe.decide(sig, r, None, pairs)
    dis = ((sig["label"] == "disgust") & (sig["split"] == "train")).to_numpy()
    assert (~d0["keep"].to_numpy()[dis]).sum() == 30 + 8 + 4                  # 42% of training disgust
    assert recipe.class_removals(sig, d0)[0][:4] == ("train", "disgust", 100, 58)
    r = r.replace(class_cap=0.2)
    d = recipe.decide(sig, r, None, pairs)
    keep, capped = d["keep"].to_numpy(), d["class_capped"].to_numpy()
    assert (~keep[dis]).sum() == 20 and capped.sum() == capped[dis].sum() == 22   # at most 20% of training disgust
    leak = recipe.has_reason(d["reasons"], "leak")
    assert leak[940:948].all() and not capped[940:948].any()                 # leaked copies are never spared
    assert not capped[~dis].any() and (keep[~dis] == d0["keep"].to_numpy()[~dis]).all()   # other classes untouched
    assert capped[950:954].sum() + capped[960:964].sum() == 4                 # the extra copies first ...
    spared_cut = np.flatnonzero(capped & recipe.has_reason(d["review"], "sharpness"))
    assert len(spared_cut) == 18 and set(spared_cut) == set(range(912, 930))  # ... then those nearest the cut
    assert recipe.has_reason(d["reasons"], "sharpness")[900:912].all()        # the 12 most extreme stay rejected
    assert (d["review"].to_numpy()[capped] != 0).all()                        # the spared go to review
    s = recipe.summarize(sig, d)
    assert s["class_capped"] == 22 and [(w["before"], w["after"]) for w in s["class_removals"]] == [(100, 80)]
    assert "rejections spared by the recipe's per-class cap (left for review): 22" in recipe.format_summary(s)
    # a person's reject still wins; an off cap leaves the decisions exactly as before
    r = r.replace(class_cap=None)
    pd.testing.assert_frame_equal(recipe.decide(sig, r, None, pairs).drop(columns="class_capped"),
                                  d0.drop(columns="class_capped"))


def test_recipe_class_cap_serialisation_and_fingerprint():
    """Absent (None) it is not written, so every existing recipe keeps its form and fingerprint; set, it
    round-trips through YAML/JSON and changes the fingerprint; out of range it is refused with the key."""
    r = recipe.Recipe(filters={"contrast": recipe.Filter(min=3.0)})
    assert "class_cap" not in r.to_dict() and "class_cap" not in r.to_yaml()
    fp = r.fingerprint()
    r = r.replace(class_cap=0.25)
    assert r.to_dict()["class_cap"] == 0.25 and r.fingerprint() != fp
    back = recipe.Recipe.from_text(r.to_yaml(), "c.yaml")
    assert back.class_cap == 0.25 and back.fingerprint() == r.fingerprint()
    assert recipe.Recipe.from_text(json.dumps(r.to_dict()), "c.json").class_cap == 0.25
    for bad, msg in ((1.5, "class_cap must be between 0 and 1"), ("lots", "class_cap must be a number")):
        with pytest.raises(InvalidInput, match=msg):
            recipe.Recipe.from_dict({**r.to_dict(), "class_cap": bad})


def test_decide_cli_warns_and_applies_the_class_cap(small, tmp_path, capsys):
    from fer_core import cli

    r = recipe.default_recipe(small.signals)
    r = r.with_filter("sharpness", min=float(np.percentile(small.signals["sharpness"], 30)))
    dec = decisions.run(small, r)
    w = recipe.class_removals(small.signals, dec, ratio=0, floor=0, min_images=1)
    assert w and w[0].split == "train"
    path = r.save(tmp_path / "sharp.yaml")
    assert cli.main(["decide", "small", "--recipe", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{int(dec['keep'].sum()):,} kept" in out
    assert cli.main(["decide", "small", "--recipe", str(path), "--class-cap", "0.05"]) == 0
    out = capsys.readouterr().out
    r = r.replace(class_cap=0.05)
    capped = decisions.run(small, r)
    assert f"{int(capped['keep'].sum()):,} kept" in out and capped["keep"].sum() > dec["keep"].sum()
    assert "spared by the recipe's per-class cap" in out
    assert cli.main(["decide", "small", "--class-cap", "1.5"]) == 1
    assert "--class-cap must be a share between 0 and 1" in capsys.readouterr().err
