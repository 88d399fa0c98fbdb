"""decide as a pipeline of pure steps (issue 16): each step alone, on small frames whose answer is known, and
the promise that no step changes what it is given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fer_core import recipe, review
from fer_core.errors import InvalidInput
from fer_core.recipe import Filter


def _sig(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {"id": [f"{i:04d}" for i in range(n)], "split": ["train"] * n, "label": ["happy"] * n}
    base.update(cols)
    return pd.DataFrame(base)


def test_filter_cuts_sets_reject_and_review_bits_and_skips_what_is_off_or_absent():
    sig = _sig(sharpness=[1.0, 5.0, 50.0, np.nan], brightness=[10.0, 100.0, 250.0, 100.0])
    filters = {"sharpness": Filter(True, 2.0, None, review_min=10.0), "brightness": Filter(False, 20.0, 240.0),
               "contrast": Filter(True, 5.0)}                                  # not in the table: ignored
    flags, review_bits = recipe.filter_cuts(sig, filters)
    sb = recipe.reason_bit("sharpness")
    assert list(flags) == [sb, 0, 0, 0]                                       # NaN is never beyond a cut
    assert list(review_bits) == [sb, sb, 0, 0]
    assert not (flags & recipe.reason_bit("brightness")).any()                # switched off
    assert list(recipe.beyond(np.array([1.0, 5.0, np.nan]), 2.0, 4.0)) == [True, True, False]


def test_cap_label_cut_spares_the_best_scored_beyond_the_share_and_changes_nothing_it_is_given():
    sig = _sig(label=["disgust"] * 4 + ["happy"] * 4, label_quality=[0.01, 0.02, 0.03, 0.04, 0.01, 0.5, 0.6, 0.7])
    bit = recipe.reason_bit("label_quality")
    flags = np.array([bit] * 4 + [bit, 0, 0, 0], np.int64)
    review_bits = np.zeros(8, np.int64)
    before = flags.copy()
    f2, r2, spared = recipe.cap_label_cut(sig, 0.5, np.ones(8, bool), flags, review_bits)
    assert (flags == before).all() and not review_bits.any()                 # pure
    assert list(np.flatnonzero(spared)) == [2, 3]                            # disgust: 2 of 4 at most; best kept
    assert list(np.flatnonzero(f2 & bit)) == [0, 1, 4] and list(np.flatnonzero(r2 & bit)) == [2, 3]
    f3, _, none = recipe.cap_label_cut(sig, None, np.ones(8, bool), flags, review_bits)
    assert (f3 == flags).all() and not none.any()


def test_relabel_candidates_only_under_the_relabel_policy_and_only_to_another_label():
    bit = recipe.reason_bit("label_quality")
    sig = _sig(label=["sad", "sad", "sad"], suggested_label=["happy", "sad", None], label_quality=[0.0, 0.0, 0.0])
    flags = np.full(3, bit, np.int64)
    f, auto = recipe.relabel_candidates(sig, "relabel", flags)
    assert list(auto) == [True, False, False] and list(f) == [0, bit, bit] and list(flags) == [bit] * 3
    f, auto = recipe.relabel_candidates(sig, "drop", flags)
    assert not auto.any() and list(f) == [bit] * 3


def test_apply_overrides_within_scope_and_a_persons_decision_beats_an_automatic_relabel():
    sig = _sig(split=["train", "train", "test", "train"], label=["sad"] * 4, suggested_label=["happy"] * 4)
    ov = pd.DataFrame({"image_id": ["0001", "0002", "0003", "9999"], "action": ["relabel", "relabel", "keep", "reject"],
                       "label": ["angry", "fear", None, None]})
    auto = np.array([False, False, False, True])
    in_scope = sig["split"].to_numpy() == "train"
    override, final, auto2 = recipe.apply_overrides(sig, ov, in_scope, auto)
    assert list(override) == ["", "relabel", "relabel", "keep"]             # recorded everywhere; unknown id ignored
    assert list(final) == ["sad", "angry", "sad", "sad"]                    # the test image keeps its label
    assert list(auto2) == [False, False, False, False] and auto[3]          # the keep reversed the auto relabel


def test_duplicate_marks_and_the_whole_pipeline_on_a_real_subset(fer_sample, tmp_path):
    from conftest import import_and_scan
    from fer_core import decisions

    import_and_scan(tmp_path, fer_sample, "steps")
    inp = decisions.load_inputs("steps")
    rec = recipe.default_recipe(inp.signals)
    dm = recipe.duplicate_marks(inp.signals, inp.pairs, rec.duplicates)
    dec = recipe.decide(inp.signals, rec, None, inp.pairs)
    assert (dm.group == dec["group"].to_numpy()).all() and (dm.eval_leaked == dec["eval_leaked"].to_numpy()).all()
    # every group keeps exactly one representative; a leak is a training image
    g = dec.loc[dec["group"] >= 0]
    assert (g.groupby("group")["representative"].sum() == 1).all()
    assert (inp.signals["split"].to_numpy()[dm.leak] == "train").all()
    # the funnel starts at the images in scope, never grows, and ends at what is kept in scope
    fun = recipe.funnel(dec)
    counts = [c for _, c in fun]
    assert counts[0] == int(dec["in_scope"].sum()) and counts == sorted(counts, reverse=True)
    assert counts[-1] == int((dec["keep"] & dec["in_scope"]).sum())


def test_queue_mask_states():
    dec = pd.DataFrame({"override": ["", "keep", "reject", "", "relabel"], "keep": [True, True, False, False, True]})
    labels = np.array(["sad", "sad", "happy", "sad", "sad"])
    base = np.array([True, True, True, True, False])
    got = {s: list(np.flatnonzero(review.queue_mask(dec, labels, base, "any", s))) for s in review.QUEUE_STATES}
    assert got["to review"] == got["undecided"] == [0, 3]
    assert got["decided by hand"] == [1, 2] and got["rejected"] == [2, 3] and got["kept by hand"] == [1]
    assert got["all"] == got["all flagged"] == [0, 1, 2, 3]
    assert list(np.flatnonzero(review.queue_mask(dec, labels, base, "sad", "to review"))) == [0, 3]
    with pytest.raises(InvalidInput, match="Unknown review state"):
        review.queue_mask(dec, labels, base, "any", "pending")


def test_nearest_is_exact_excludes_the_image_itself_and_sorts():
    from fer_core import embedmap

    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 8))
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    ids = np.array([f"{i:03d}" for i in range(50)], dtype=object)
    got = embedmap.nearest(ids, unit, ["007", "nope"], 5)
    assert list(got) == ["007"]
    sims = unit @ unit[7]
    sims[7] = -np.inf
    want = np.argsort(-sims)[:5]
    assert list(got["007"]["id"]) == list(ids[want]) and got["007"]["similarity"].is_monotonic_decreasing


def test_recipes_are_values_a_change_makes_a_new_one():
    """Issue 16: UI callbacks changed recipes in place (a recipe handed to decide or another session could change
    under it). Now every change makes a new recipe and the old one stays as it was."""
    from dataclasses import FrozenInstanceError

    r = recipe.Recipe(filters={"sharpness": Filter(min=100.0)})
    r2 = r.with_filter("sharpness", min=250.0).with_duplicates(near_threshold=6).with_labels(policy="relabel")
    r3 = r2.replace(name="strict", scope=["train", "val"], class_cap=0.2)
    assert r.filters["sharpness"].min == 100.0 and r.duplicates.near_threshold == 4 and r.labels.policy == "drop"
    assert (r2.filters["sharpness"].min, r2.duplicates.near_threshold, r2.labels.policy) == (250.0, 6, "relabel")
    assert r3.scope == ("train", "val") and r3.class_cap == 0.2 and r2.name == "default"
    assert r.fingerprint() != r2.fingerprint() != r3.fingerprint()
    for change in (lambda: setattr(r.filters["sharpness"], "min", 1.0), lambda: setattr(r, "class_cap", 0.5),
                   lambda: setattr(r.duplicates, "near", False), lambda: setattr(r.labels, "policy", "relabel")):
        with pytest.raises(FrozenInstanceError):
            change()
    with pytest.raises(TypeError, match="immutable"):
        r.filters["contrast"] = Filter(min=3.0)
    assert recipe.Recipe.from_dict(r3.to_dict()) == r3       # its file holds exactly the value


def test_recipe_values_are_plain_whatever_they_were_given_as(tmp_path):
    """A cut given as a numpy float (a notebook's percentile) must save to YAML; an int cut must fingerprint the
    same after a save (it is read back as a float)."""
    r = recipe.Recipe().with_filter("sharpness", min=np.float64(12.5)).with_filter("contrast", min=250)
    r = r.replace(class_cap=np.float32(0.25))
    back = recipe.Recipe.load(r.save(tmp_path / "r.yaml"))
    assert back == r and back.fingerprint() == r.fingerprint()
    assert type(r.filters["sharpness"].min) is float and type(r.class_cap) is float
