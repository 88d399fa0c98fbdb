"""Training, honest evaluation, cancel, determinism, resume, data sources and class priors (label noise:
test_label_noise.py; the A/B: test_ab.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import import_and_scan
from waiting import wait_moving


# ---- evaluation maths ----------------------------------------------------------------------------------

def test_metrics_match_sklearn_and_intervals_cover_the_estimate():
    from sklearn.metrics import f1_score, recall_score

    from fer_core.train.evaluate import evaluate, paired_difference

    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 2000)
    probs = rng.random((2000, 7))
    probs[np.arange(2000), y] += rng.random(2000) * 1.5  # better than chance
    leaked = rng.random(2000) < 0.2
    m = evaluate(y, probs, list("abcdefg"), leaked)
    pred = probs.argmax(1)
    assert m["test"]["accuracy"] == pytest.approx((pred == y).mean())
    assert m["test"]["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    rec = recall_score(y, pred, average=None)
    assert list(m["test"]["per_class_recall"].values()) == pytest.approx(list(rec))
    conf = np.array(m["test"]["confusion"])
    assert conf.sum() == 2000 and np.trace(conf) / conf.sum() == pytest.approx(m["test"]["accuracy"])
    lo, hi = m["test"]["ci95"]["accuracy"]
    assert lo < m["test"]["accuracy"] < hi and hi - lo < 0.06
    assert m["test_without_leaked"]["n"] == int((~leaked).sum())
    assert m["test_without_leaked"]["accuracy"] == pytest.approx((pred[~leaked] == y[~leaked]).mean())
    # paired difference: identical arms are within noise; a clearly better arm is not
    a = np.stack([pred == y] * 2)
    same = paired_difference(a, a)
    assert same["difference"] == 0 and same["within_noise"]
    better = np.stack([(pred == y) | (rng.random(2000) < 0.3)] * 2)
    d = paired_difference(a, better)
    assert d["difference"] > 0.03 and not d["within_noise"] and d["ci95"][0] > 0


def test_captured_share_of_a_reference_gain():
    """Issue 17: how much of the crowd relabel's gain over raw an automatic arm captures — the ratio of the two
    paired gains, an interval from the same joint resampling, and no ratio when there is no gain to capture."""
    from fer_core.train import ab
    from fer_core.train.evaluate import captured_share

    rng = np.random.default_rng(1)
    n = 4000
    base = np.stack([rng.random(n) < 0.6 for _ in range(3)])            # raw: 60% right, 3 seeds
    fixable = (rng.random(n) < 0.25) & ~base.any(0)                     # images the reference gets right too
    ref = base | fixable                                                # the crowd relabel: + every fixable one
    half = fixable & (np.arange(n) % 2 == 0)
    arm = base | half                                                   # the recipe: half of them
    c = captured_share(base, arm, ref)
    assert c["share"] == pytest.approx(half.sum() / fixable.sum())
    assert c["gain"] == pytest.approx(half.sum() / n) and c["reference_gain"] == pytest.approx(fixable.sum() / n)
    lo, hi = c["ci95"]
    assert lo < c["share"] < hi and 0.35 < lo and hi < 0.65 and c["why"] is None
    assert captured_share(base, ref, ref)["share"] == pytest.approx(1.0)
    assert captured_share(base, base, ref)["share"] == 0
    # a reference no better than raw: no share, and why
    none = captured_share(base, arm, base)
    assert none["share"] is None and none["ci95"] is None and "no gain to capture" in none["why"]
    worse = captured_share(base, arm, base & (rng.random(n) < 0.8))
    assert worse["share"] is None and "worse" in worse["why"]
    text = ab.captured_text("curated", {"seeds": [0, 1, 2], "full": c}, "standard")
    assert text.startswith(f"curated captures {c['share'] * 100:.0f}% (95% interval") and "indicative" not in text
    assert "within noise of raw: there is no gain to capture; no share." in ab.captured_text("curated", {"seeds": [0], "full": none}, "standard")
    assert "1 seed: indicative only" in ab.captured_text("curated", {"seeds": [0], "full": c}, "standard")


def test_the_crowd_relabels_gain_split_into_class_prior_and_the_rest():
    """Issue 17 (bench_prior_shift.py): raw re-weighted to the crowd arm's training class shares, no retraining —
    what a change of class prior alone gives, and what the crowd's labels add beyond it; the parts add up."""
    from fer_core.train import ab

    classes = ["happy", "sad", "neutral"]
    assert ab.prior_weights_to({"happy": 50, "sad": 30, "neutral": 20}, {"happy": 50, "sad": 10, "neutral": 40},
                               classes) == pytest.approx([1.0, 1 / 3, 2.0])
    assert ab.prior_weights_to({"happy": 5, "sad": 0}, {"happy": 5, "sad": 5}, ["happy", "sad"])[1] == 1.0
    rng = np.random.default_rng(3)
    n = 3000
    y = rng.integers(0, 3, n)                          # the crowd's test labels; 2 = neutral
    # raw: right on 60%; on the rest it says sad, leaning only slightly (0.45 against 0.40) away from the truth
    raw = np.full((n, 3), 0.15)
    right = rng.random(n) < 0.6
    raw[np.arange(n), y] = np.where(right, 0.7, 0.40)
    raw[~right, 1] = np.where(y[~right] == 1, 0.7, 0.45)
    crowd = np.eye(3)[np.where(rng.random(n) < 0.85, y, (y + 1) % 3)]   # right on ~85%
    counts = {"raw": {0: {"happy": 50, "sad": 30, "neutral": 20}},
              "crowd": {0: {"happy": 50, "sad": 24, "neutral": 26}}}      # sad ×0.8, neutral ×1.3
    leaked = np.arange(n) % 10 == 0
    cp = ab._crowd_prior({"raw": {0: raw}, "crowd": {0: crowd}}, counts, classes, y, leaked)
    whole = ((crowd.argmax(1) == y).mean() - (raw.argmax(1) == y).mean())
    assert cp["seeds"] == [0] and cp["weights"] == {"happy": 1.0, "sad": 0.8, "neutral": 1.3}
    assert cp["prior"]["full"]["difference"] + cp["beyond"]["full"]["difference"] == pytest.approx(whole)
    # the shift undoes sad's slight lean on every wrong image whose truth is not sad (~27% of the images)
    assert cp["prior"]["full"]["difference"] == pytest.approx((~right & (y != 1)).mean())
    assert "without_leaked" in cp["beyond"]
    text = ab.crowd_prior_text(cp, "standard")
    assert text.startswith(f"Of the crowd relabel's {whole * 100:+.2f} points over raw, ") and "1 seed" in text
    assert ab._crowd_prior({"raw": {0: raw}}, {"raw": counts["raw"]}, classes, y, leaked) is None


# ---- smoke training on real FER2013 -----------------------------------------------------------------------

@pytest.mark.slow
def test_smoke_run_beats_chance_and_reports_honestly(fer2013_workspace):
    import keras

    from fer_core import datasets
    from fer_core.train import runner

    events = []
    m = runner.train("fer2013", "raw", preset="smoke", seed=0, progress=events.append)
    ds = datasets.load("fer2013")
    test = ds.catalog[ds.catalog["split"] == "test"]
    assert m["test"]["n"] == len(test) == 3589            # the whole PrivateTest split, untouched
    majority = test["label"].value_counts(normalize=True).max()
    assert m["test"]["accuracy"] > majority + 0.03, (m["test"]["accuracy"], majority)  # clearly beats chance
    # metrics JSON agrees with its own confusion matrix
    info = runner.run_info("fer2013", m["run_id"])
    saved = json.loads((info["dir"] / "metrics.json").read_text())
    conf = np.array(saved["test"]["confusion"])
    assert np.trace(conf) / conf.sum() == pytest.approx(saved["test"]["accuracy"])
    for i, c in enumerate(saved["classes"]):
        assert saved["test"]["per_class_recall"][c] == pytest.approx(conf[i, i] / conf[i].sum())
    assert saved["test_without_leaked"]["n"] == 3589 - saved["test_leaked_images"] and saved["test_leaked_images"] > 500
    assert info["status"]["state"] == "done" and info["model"] is not None
    assert len(info["history"]) == m["epochs_run"] == 4
    # progress: per step with epoch, images/s and ETA
    tr = [e for e in events if e.stage == "train"]
    assert tr[-1].done == tr[-1].total and {"epoch", "images_per_s", "eta_s"} <= set(tr[-1].extra)
    # the saved model reproduces the saved test probabilities
    model = keras.models.load_model(info["model"])
    probs = np.load(info["dir"] / "test_probs.npy")
    again = runner.predict(model, np.load(next((ds.home / "work").glob("pixels-48-*.npy")))[
        np.searchsorted(np.sort(ds.catalog["id"].to_numpy()), np.sort(test["id"].to_numpy()))])
    assert np.abs(again - probs).max() < 1e-4


@pytest.mark.slow
def test_same_seed_same_metrics(fer2013_workspace):
    from fer_core.train import runner

    a = runner.train("fer2013", "raw", preset="smoke", seed=7, epochs=2, max_train=1500, n_boot=200)
    b = runner.train("fer2013", "raw", preset="smoke", seed=7, epochs=2, max_train=1500, n_boot=200)
    c = runner.train("fer2013", "raw", preset="smoke", seed=8, epochs=2, max_train=1500, n_boot=200)
    pa = np.load(runner.run_info("fer2013", a["run_id"])["dir"] / "test_probs.npy")
    pb = np.load(runner.run_info("fer2013", b["run_id"])["dir"] / "test_probs.npy")
    pc = np.load(runner.run_info("fer2013", c["run_id"])["dir"] / "test_probs.npy")
    assert a["test"] == b["test"] and np.array_equal(pa, pb)
    assert not np.array_equal(pa, pc)


@pytest.mark.slow
def test_cancel_marks_the_run_cancelled_without_a_model(fer2013_workspace):
    from fer_core.jobs import JobManager
    from fer_core.train import runner

    jm = JobManager()
    jid = jm.start("train", ["train", "fer2013", "--preset", "smoke", "--run-id", "cancel-me"], dataset="fer2013")

    def training() -> bool:
        st = jm.status(jid)
        assert not st.finished, jm.log(jid)
        return st.stage == "train" and st.done >= 5

    wait_moving(training, lambda: (jm.status(jid).stage, jm.status(jid).done), what="the run's first steps")
    st = jm.cancel(jid, grace=30)
    assert st.state == "cancelled"
    info = runner.run_info("fer2013", "cancel-me")
    assert info["status"]["state"] == "cancelled"
    assert info["model"] is None and info["metrics"] is None
    assert not list(info["dir"].glob("*.keras")) and not (info["dir"] / "metrics.json").exists()


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_finished_epoch(fer2013_workspace):
    """Every finished epoch is checkpointed; a run stopped in epoch 3 continues from the end of epoch 2: its first
    two epochs are the uninterrupted run's, bit for bit, and its optimizer has taken three epochs of steps. The third
    epoch is not bit-identical to the uninterrupted run's — cause not found: the reloaded model's weights, optimizer
    slots and dropout state are equal, one step on the same batch is exact and an epoch fed from numpy arrays is
    exact, but an epoch through the batch feeder (keras PyDataset) is not; resumed runs say so in their config."""
    from fer_core.errors import Cancelled, InvalidInput
    from fer_core.progress import CancelToken
    from fer_core.train import runner

    runner.train("fer2013", preset="smoke", epochs=3, seed=4, run_id="whole", max_train=1200)
    token = CancelToken()

    def stop_in_epoch_3(ev):
        if ev.stage == "train" and ev.extra.get("epoch") == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        runner.train("fer2013", preset="smoke", epochs=3, seed=4, run_id="cut", progress=stop_in_epoch_3, cancel=token,
                     max_train=1200)
    info = runner.run_info("fer2013", "cut")
    assert info["status"]["state"] == "cancelled" and info["model"] is None
    state = runner.load_checkpoint(info["dir"] / "checkpoint")
    assert state["epoch"] == 2 and len(state["rows"]) == 2
    assert sorted(p.name for p in (info["dir"] / "checkpoint").iterdir()) == ["model-2.keras", "state.json"]
    resumed = runner.train("fer2013", preset="smoke", epochs=3, seed=4, run_id="cut", resume=True, max_train=1200)
    info = runner.run_info("fer2013", "cut")
    assert info["config"]["resumed"] == [2] and "restarted" not in info["config"]
    assert [r["epoch"] for r in info["history"]] == [1, 2, 3]
    assert not (info["dir"] / "checkpoint").exists() and info["model"] is not None
    hw = runner.run_info("fer2013", "whole")["history"]
    for a, b in zip(hw[:2], info["history"][:2]):                  # the epochs before the stop: the same run
        assert a["loss"] == b["loss"] and a["val_loss"] == b["val_loss"]
    import keras

    steps = -(-info["config"]["sizes"]["train"] // 64)            # smoke batch size
    final = keras.models.load_model(info["model"])
    assert int(final.optimizer.iterations.numpy()) == 3 * steps   # continued (a restart would have 1 epoch of steps)
    assert info["history"][2]["loss"] == pytest.approx(hw[2]["loss"], rel=0.1)
    assert resumed["test"]["accuracy"] > 0.15 and resumed["epochs_run"] == 3
    with pytest.raises(InvalidInput, match="already finished"):
        runner.train("fer2013", preset="smoke", epochs=3, seed=4, run_id="cut", resume=True, max_train=1200)
    # a run whose data changed since it stopped starts again from epoch 1, and says so
    token2 = CancelToken()

    def stop_in_epoch_2(ev):
        if ev.stage == "train" and ev.extra.get("epoch") == 2:
            token2.cancel()

    with pytest.raises(Cancelled):
        runner.train("fer2013", preset="smoke", epochs=2, seed=5, run_id="other", progress=stop_in_epoch_2,
                     cancel=token2, max_train=1200)
    again = runner.train("fer2013", preset="smoke", epochs=2, seed=5, run_id="other", resume=True, max_train=1000)
    cfg = runner.run_info("fer2013", "other")["config"]
    assert cfg["restarted"] == "its data, preset or seed changed" and cfg["resumed"] == []
    assert again["train_images"] == 1000


def test_a_cosine_decay_takes_adam_to_zero_and_resumes_on_its_schedule(fer2013_workspace):
    """``lr_decay="cosine"``: Adam's rate falls along a cosine to 0 over the run (no plateau halving), so the last
    epochs do not land anywhere on a noisy path; a killed run continues on the same schedule (the step count is
    in the checkpoint). The preset's definition records it; an unknown decay is refused."""
    from fer_core.errors import Cancelled, InvalidInput
    from fer_core.progress import CancelToken
    from fer_core.train import presets, runner

    with pytest.raises(InvalidInput, match="learning-rate decay"):
        presets.get("standard", lr_decay="linear")
    assert "lr_decay" not in presets.get("full").to_dict()                 # old runs' definitions compare equal
    assert presets.get("standard").lr_decay == "cosine"                    # the standard schedule since 2026-12-07
    cos = presets.get("standard", lr_decay="cosine")
    assert presets.get("full").stops_early and not cos.stops_early         # the schedule sets the run's length
    assert not presets.get("full", lr_decay="cosine").stops_early
    assert presets.selects_epoch(presets.get("full").to_dict()) and not presets.selects_epoch(cos.to_dict())
    from fer_core.train import ab
    # a cosine run never stops early: its patience is no part of what it trained as (an A/B reuses it either way)
    assert ab._definition({**cos.to_dict(), "patience": None}) == ab._definition(cos.to_dict())
    assert ab._definition({**presets.get("full").to_dict(), "patience": None}) != \
        ab._definition(presets.get("full").to_dict())                   # … an early-stopping run's is
    kw = dict(preset="standard", epochs=3, seed=1, max_train=900, lr_decay="cosine", augment="light")
    whole = runner.train("fer2013", run_id="cos", **kw)
    info = runner.run_info("fer2013", "cos")
    assert info["config"]["preset"]["lr_decay"] == "cosine" and whole["epochs_run"] == 3
    lrs = [r["lr"] for r in info["history"]]
    # CosineDecay(1e-3) after 1/3 and 2/3 of the steps, then 0 (the rate the next step would use)
    assert lrs == pytest.approx([0.75e-3, 0.25e-3, 0.0], abs=2e-5)
    token = CancelToken()

    def stop_in_epoch_3(ev):
        if ev.stage == "train" and ev.extra.get("epoch") == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        runner.train("fer2013", run_id="cos-cut", progress=stop_in_epoch_3, cancel=token, **kw)
    runner.train("fer2013", run_id="cos-cut", resume=True, **kw)
    cut = runner.run_info("fer2013", "cos-cut")
    assert cut["config"]["resumed"] == [2]
    assert [r["lr"] for r in cut["history"]] == pytest.approx(lrs, abs=2e-5)   # the schedule went on, not again


# ---- data sources ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_recipe_and_export_sources_train_on_the_kept_images_and_test_on_the_full_split(fer2013_workspace, tmp_path):
    from fer_core import decisions, export, recipe as recipe_mod, review, datasets
    from fer_core.train import data as data_mod

    inputs = decisions.load_inputs("fer2013")
    rec = recipe_mod.default_recipe(inputs.signals)
    rec = rec.replace(scope=["train", "val", "test"])   # even a recipe that reaches the test split never cleans the test set here
    ds = datasets.load("fer2013")
    tr_ids = inputs.signals.loc[inputs.signals["split"] == "train", "id"].to_numpy()
    review.store_for(ds).set([tr_ids[0]], "relabel", label="disgust", author="t")
    dec = decisions.run(inputs, rec, decisions.overrides_for("fer2013"))
    td = data_mod.assemble("fer2013", "recipe", rec)
    kept_train = int((dec["keep"] & (inputs.signals["split"] == "train")).sum())
    assert len(td.train) == kept_train < 28709
    assert len(td.test) == 3589 and td.test_leaked is not None and td.test_leaked.sum() > 500
    assert td.train.labels[np.searchsorted(td.train.ids, tr_ids[0])] == "disgust"
    res = export.export("fer2013", rec, "clean", out_dir=tmp_path / "clean")
    te = data_mod.assemble("fer2013", "export", export_dir=res.path)
    assert len(te.train) == sum(res.manifest["counts"]["after"]["train"].values()) == kept_train
    assert len(te.test) == 3589                                    # the official split, not the export's test folder
    assert np.array_equal(np.sort(te.train.y), np.sort(td.train.y))


def test_an_epoch_of_more_images_than_the_data_cycles_through_it_evenly():
    """Budget "steps": a curated set trains as many steps as raw by drawing more images per epoch; over the run
    every image is seen as often as every other (±1), and one pass per epoch is the feeder it always was."""
    from fer_core.train import augment

    x = np.arange(10 * 4 * 4, dtype=np.uint8).reshape(10, 4, 4)
    y = np.arange(10) % 3
    plain = augment.make_feeder(x, y, 4, seed=7, augment="none")
    stream = augment.make_feeder(x, y, 4, seed=7, augment="none", epoch_images=10)
    assert len(plain) == len(stream) == 3
    for _ in range(3):            # epoch k of one pass per epoch is pass k, in the same order as before
        assert np.array_equal(plain.idx, stream.idx)
        assert sorted(plain.idx.tolist()) == list(range(10))
        plain.on_epoch_end()
        stream.on_epoch_end()
    more = augment.make_feeder(x, y, 4, seed=7, augment="none", epoch_images=13)
    assert len(more) == 4 and more.images == 13
    seen = []
    for _ in range(10):           # 130 images drawn: each of the 10 exactly 13 times
        assert len(more.idx) == 13
        seen += more.idx.tolist()
        more.on_epoch_end()
    assert np.bincount(seen, minlength=10).tolist() == [13] * 10
    xb, yb = more[3]              # the last batch holds what is left of the epoch
    assert xb.shape == (1, 4, 4, 1) and yb.shape == (1,)
    # the first epoch of 13 is pass 0 (the one-pass feeder's first epoch) and the start of pass 1 (its second)
    first = augment.make_feeder(x, y, 4, seed=7, augment="none", epoch_images=13)
    one = augment.make_feeder(x, y, 4, seed=7, augment="none")
    assert np.array_equal(first.idx[:10], one.idx)
    one.on_epoch_end()
    assert np.array_equal(first.idx[10:], one.idx[:3])


def test_prior_weights_restore_the_source_class_shares():
    from fer_core.train.runner import prior_weights

    w = prior_weights({"a": 100, "b": 100, "c": 10}, {"a": 100, "b": 50, "c": 0})
    # shares among the classes that kept images (c kept none: its weight is moot)
    assert w["a"] == pytest.approx((100 / 200) / (100 / 150)) and w["b"] == pytest.approx((100 / 200) / (50 / 150))
    assert w["c"] == 1.0
    kept = {"a": 100, "b": 50}
    # weighted, each kept class carries its source share again (a, b: 1:1), and the weights average 1
    assert w["a"] * kept["a"] == pytest.approx(w["b"] * kept["b"])
    assert (w["a"] * 100 + w["b"] * 50) / 150 == pytest.approx(1.0)
    assert prior_weights({"a": 5, "b": 5}, {"a": 5, "b": 5}) == {"a": 1.0, "b": 1.0}   # nothing removed: no change


@pytest.mark.slow
def test_a_source_prior_run_weights_the_classes_the_recipe_thinned(fer2013_workspace):
    from fer_core import decisions, recipe as recipe_mod
    from fer_core.errors import InvalidInput
    from fer_core.train import runner

    rec = recipe_mod.default_recipe(decisions.load_inputs("fer2013").signals)
    with pytest.raises(InvalidInput, match="both set the class weights"):
        runner.train("fer2013", "recipe", rec, preset="smoke", prior="source", balance="class_weight")
    with pytest.raises(InvalidInput, match="Unknown class prior"):
        runner.train("fer2013", "recipe", rec, preset="smoke", prior="equal")
    assert runner.list_runs("fer2013") == []                        # refused before any run folder is made
    m = runner.train("fer2013", "recipe", rec, preset="smoke", epochs=1, prior="source", max_train=1200)
    cfg = runner.run_info("fer2013", m["run_id"])["config"]
    pr = cfg["prior"]
    assert m["prior"] == "source" and pr["mode"] == "source"
    assert pr["source_counts"]["disgust"] == 436 and sum(pr["source_counts"].values()) == 28709
    # the recipe thins disgust (leak copies) far more than happy: disgust weighs more, happy less, than 1
    removed = {c: 1 - cfg["train_label_counts"][c] / pr["source_counts"][c] for c in pr["weights"]}
    assert removed["disgust"] > removed["happy"]
    assert pr["weights"]["disgust"] > 1 > pr["weights"]["happy"]
    # smoke trains on a stratified subset of the kept images; the weights still restore the source's shares
    n = sum(cfg["train_label_counts"].values())
    share = {c: cfg["train_label_counts"][c] * pr["weights"][c] / n for c in pr["weights"]}
    for c in share:
        assert share[c] == pytest.approx(pr["source_counts"][c] / 28709, rel=1e-6)


# ---- label errors with planted noise -------------------------------------------------------------------------

def test_scan_refuses_the_labels_family_with_a_clear_message(tmp_path, fer_sample):
    from fer_core import store
    from fer_core.errors import FerError

    import_and_scan(tmp_path, dict(list(fer_sample.items())[:30]), "tiny", scan=False)
    with pytest.raises(FerError) as ei:
        store.scan("tiny", ["labels"])
    assert "fer_core labels" in str(ei.value.message)


def test_unknown_label_policy_is_refused():
    from fer_core import recipe as recipe_mod
    from fer_core.errors import InvalidInput

    with pytest.raises(InvalidInput):
        recipe_mod.Recipe.from_dict({"labels": {"policy": "guess"}})
