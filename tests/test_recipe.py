"""Recipes: YAML round trip, data-derived defaults, deterministic vectorised decide, overrides, policies."""

from __future__ import annotations

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
    r.filters["sharpness"].min = 321.5
    r.duplicates.near_threshold = 6
    r.scope = ["train", "val"]
    for suffix in (".yaml", ".json"):
        p = r.save(tmp_path / f"r{suffix}")
        back = recipe.Recipe.load(p)
        assert back.to_dict() == r.to_dict()
        assert back.fingerprint() == r.fingerprint()
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
    r.filters["sharpness"].min = float(np.percentile(small.signals["sharpness"], 10))
    d1 = decisions.run(small, r)
    d2 = decisions.run(small, r.copy())
    pd.testing.assert_frame_equal(d1, d2)
    sig = small.signals
    low = (sig["sharpness"] < r.filters["sharpness"].min).to_numpy()
    assert np.array_equal(recipe.has_reason(d1["flags"], "sharpness"), low)
    train = (sig["split"] == "train").to_numpy()
    assert np.array_equal(recipe.has_reason(d1["reasons"], "sharpness"), low & train)
    assert d1.loc[~train, "keep"].all()   # default scope: val/test never rejected
    assert not d1.loc[low & train, "keep"].any()
    # disabling the filter removes the reason
    r.filters["sharpness"].enabled = False
    assert not recipe.has_reason(decisions.run(small, r)["flags"], "sharpness").any()


def test_overrides_win_within_scope(small):
    r = recipe.default_recipe(small.signals)
    r.filters["sharpness"].min = float(np.percentile(small.signals["sharpness"], 30))
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
    r.scope = ["train", "val", "test"]
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
    for f in r.filters.values():
        f.enabled = False
    d = decisions.run(inp, r)
    groups = d[d["group"] >= 0].groupby("group")
    assert groups.ngroups == 10 and (groups.size() == 3).all()
    assert (groups["keep"].sum() == 1).all() and (groups["representative"].sum() == 1).all()
    assert (d.loc[d["group"] < 0, "keep"]).all()
    r.duplicates.policy = "drop_all"
    d = decisions.run(inp, r)
    assert not d.loc[d["group"] >= 0, "keep"].any()
    r.duplicates.policy = "keep_all"
    assert decisions.run(inp, r)["keep"].all()
    r.duplicates.policy = "keep_one"
    r.scope = ["train", "val", "test"]
    r.duplicates.near = False  # exact only: the brightened copies fall out of the groups
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
    r.labels.class_cap = None
    d2 = recipe.decide(sig, r)
    assert recipe.has_reason(d2["reasons"], "label_quality")[train & (q < lq.min)].all()
    assert recipe.class_imbalance(sig, d2)[0]["label"] == "disgust"
