"""The A/B of raw against curated training: arms paired by seed, intervals, resume, a raw baseline reused.
(Split from test_train.py so the parallel run can balance the files.)"""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_ab_pairs_arms_by_seed_and_reports_the_difference_with_an_interval(fer2013_workspace, monkeypatch):
    from fer_core import datasets, decisions, recipe as recipe_mod
    from fer_core.errors import InvalidInput
    from fer_core.train import ab, runner

    rec = recipe_mod.default_recipe(decisions.load_inputs("fer2013").signals)
    doc = ab.run_ab("fer2013", rec, seeds=[0], preset="smoke", epochs=1, max_train=1200)
    assert doc["complete"] and doc["arms"] == ["raw", "curated"]      # no label signals → no relabel arm
    assert doc["budget"] == "steps"                                      # a new A/B holds compute equal
    res = doc["result"]
    raw, cur = res["arms"]["raw"]["runs"][0], res["arms"]["curated"]["runs"][0]
    assert raw["seed"] == cur["seed"] == 0 and raw["history"] and cur["history"]
    assert set(raw["per_class_recall"]) == set(cur["per_class_recall"]) and len(raw["per_class_recall"]) == 7
    assert set(cur["per_class_recall_without_leaked"]) == set(cur["per_class_recall"])   # the leakage-aware row too
    assert list(ab.recall_table(res).index) == ["raw", "raw (without leaked)", "curated", "curated (without leaked)"]
    d = res["differences"]["curated"]
    assert d["full"]["difference"] == pytest.approx(cur["accuracy"] - raw["accuracy"], abs=1e-9)
    lo, hi = d["full"]["ci95"]
    assert lo <= d["full"]["difference"] <= hi
    assert d["without_leaked"] is not None
    text = ab.verdict(d["full"])
    assert ("within noise" in text) == (lo <= 0 <= hi)
    saved = ab.list_ab("fer2013")[0]
    assert saved["ab_id"] == doc["ab_id"] and saved["complete"]
    with pytest.raises(InvalidInput, match="relabel arm needs label signals"):
        ab.arms_for("fer2013", rec, relabel_arm=True)


    # A killed A/B resumes: finished runs are kept, only the missing pair is trained again.
    raw_id, cur_id = doc["runs"]["raw"][0], doc["runs"]["curated"][0]
    st_file = runner.runs_root("fer2013") / cur_id / "status.json"
    st_file.write_text(json.dumps({"state": "running", "pid": 2 ** 22 + 12345, "started": 0}))   # a dead process
    assert runner.run_info("fer2013", cur_id)["status"]["state"] == "failed"
    with pytest.raises(InvalidInput, match="different preset"):
        ab.run_ab("fer2013", rec, seeds=[0], preset="standard", ab_id=doc["ab_id"], resume=True, epochs=1, max_train=1200)
    with pytest.raises(InvalidInput, match="no A/B"):
        ab.run_ab("fer2013", rec, seeds=[0], preset="smoke", ab_id="nope", resume=True)
    # a preset redefined under its own name (a new schedule) since the runs trained: neither resumed nor reused
    import dataclasses

    from fer_core.train import presets
    with monkeypatch.context() as mp:
        mp.setitem(presets.PRESETS, "smoke", dataclasses.replace(presets.PRESETS["smoke"], lr=0.05))
        with pytest.raises(InvalidInput, match=r"as it was defined then \(lr 0\.02; now lr 0\.05\)"):
            ab.run_ab("fer2013", None, seeds=[0], preset="smoke", ab_id=doc["ab_id"], resume=True, epochs=1,
                      max_train=1200)
        with pytest.raises(InvalidInput, match="as it was defined then"):
            ab.run_ab("fer2013", rec, seeds=[0], preset="smoke", baseline=doc["ab_id"], epochs=1, max_train=1200)
    # a setting given explicitly at the preset's own value is the same setting: resumed (here: nothing to train)
    same = ab.run_ab("fer2013", None, seeds=[], preset="smoke", ab_id=doc["ab_id"], resume=True, epochs=1,
                     max_train=1200, lr=0.02, train_seeds=[])
    assert same["runs"]["raw"] == [raw_id]
    with pytest.raises(InvalidInput, match="different preset settings"):
        ab.run_ab("fer2013", None, seeds=[], preset="smoke", ab_id=doc["ab_id"], resume=True, epochs=1,
                  max_train=1200, lr=0.03, train_seeds=[])
    # a seed added, but only seed 0's missing run trained now (other work can be queued between seeds)
    again = ab.run_ab("fer2013", None, seeds=[1], preset="smoke", ab_id=doc["ab_id"], resume=True, epochs=1,
                      max_train=1200, train_seeds=[0])
    assert not again["complete"] and again["seeds"] == [0, 1] and "finished" not in again
    assert ab.load_ab("fer2013", doc["ab_id"])["seeds"] == [0, 1]
    assert again["runs"]["raw"] == [raw_id]                              # kept, not retrained
    assert again["runs"]["curated"] != [cur_id] and len(again["runs"]["curated"]) == 1
    assert again["result"]["arms"]["curated"]["runs"][0]["accuracy"] == pytest.approx(cur["accuracy"])  # same seed

    # A run killed mid-way continues from its last finished epoch under the same run id when the A/B resumes.
    from fer_core.errors import Cancelled
    from fer_core.progress import CancelToken

    token = CancelToken()

    def stop_in_epoch_2(ev):
        if ev.stage == "train" and ev.extra.get("epoch") == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        ab.run_ab("fer2013", rec, seeds=[3], preset="smoke", ab_id="killed", arms=["raw"], epochs=2, max_train=1200,
                  progress=stop_in_epoch_2, cancel=token)
    cut = ab.load_ab("fer2013", "killed")["runs"]["raw"][0]
    assert runner.run_info("fer2013", cut)["status"]["state"] == "cancelled"
    # a resume that trains nothing (another seed's turn) rewrites the A/B's document with its finished runs only:
    # the stopped run is still found, by its own config (it was trained again from epoch 1 before)
    killed_file = ab.ab_root("fer2013") / "killed.json"          # … saved before budgets were recorded: passes
    killed_file.write_text(json.dumps({k: v for k, v in json.loads(killed_file.read_text()).items() if k != "budget"}))
    idle = ab.run_ab("fer2013", None, seeds=[], preset="smoke", ab_id="killed", resume=True, epochs=2, max_train=1200,
                     train_seeds=[])
    assert idle["budget"] == "passes"
    assert idle["runs"]["raw"] == [] and not idle["complete"]
    back = ab.run_ab("fer2013", None, seeds=[], preset="smoke", ab_id="killed", resume=True, epochs=2, max_train=1200)
    assert back["complete"] and back["runs"]["raw"] == [cut]
    assert runner.run_info("fer2013", cut)["config"]["resumed"] == [1]

    # A second recipe against the same raw runs: the raw arm is reused, only the new arm is trained.
    rec2 = rec.with_labels(class_cap=None).replace(name="second")
    with pytest.raises(InvalidInput, match="different preset settings"):     # 2 epochs against the baseline's 1
        ab.run_ab("fer2013", rec2, seeds=[0], preset="smoke", baseline=doc["ab_id"], epochs=2, max_train=1200)
    with pytest.raises(InvalidInput, match="no A/B 'nope'"):
        ab.run_ab("fer2013", rec2, seeds=[0], preset="smoke", baseline="nope", epochs=1, max_train=1200)
    second = ab.run_ab("fer2013", rec2, seeds=[0, 1], preset="smoke", baseline=doc["ab_id"], epochs=1, max_train=1200)
    assert second["complete"] and second["baseline"] == doc["ab_id"]
    assert second["runs"]["raw"][0] == raw_id and len(second["runs"]["raw"]) == 2   # seed 1 was not in the baseline
    assert raw_id not in second["runs"]["curated"] and len(second["runs"]["curated"]) == 2
    assert second["result"]["differences"]["curated"]["seeds"] == [0, 1]
    assert second["result"]["arms"]["raw"]["runs"][0]["accuracy"] == pytest.approx(raw["accuracy"])
    assert runner.run_info("fer2013", raw_id)["config"]["source"]["catalog_hash"] == datasets.load("fer2013").meta["catalog_hash"]
    assert second["result"]["notes"] == []                              # both seeds trained on one set of images
    # an arm whose seeds trained on different decisions (signals recomputed between its runs) is flagged, and so is
    # a seed whose control was built on other decisions than its curated run
    s1_file = runner.runs_root("fer2013") / second["runs"]["curated"][1] / "config.json"
    s1_cfg = json.loads(s1_file.read_text())
    changed = {**s1_cfg["source"], "decisions": {**s1_cfg["source"]["decisions"], "fingerprint": "recomputed"}}
    s1_file.write_text(json.dumps({**s1_cfg, "source": changed}))
    notes = ab.summarize("fer2013", second["runs"])["notes"]
    assert len(notes) == 1 and "curated arm's seeds trained on 2 different sets" in notes[0]
    assert "seed 1 kept" in notes[0] and "seed 0 kept" in notes[0]
    assert ab.image_set_notes("fer2013", {"curated": second["runs"]["curated"][1:], "control":
                                          [again["runs"]["curated"][0]]}) == []       # seeds 1 and 0: not a pair
    s1_file.write_text(json.dumps(s1_cfg))
    s0_file = runner.runs_root("fer2013") / second["runs"]["curated"][0] / "config.json"
    s0_cfg = json.loads(s0_file.read_text())
    s0_file.write_text(json.dumps({**s0_cfg, "source": {**s0_cfg["source"], "decisions": {
        **s0_cfg["source"]["decisions"], "fingerprint": "other"}}}))
    pair = ab.image_set_notes("fer2013", {"curated": [again["runs"]["curated"][0]],
                                          "control": [second["runs"]["curated"][0]]})
    assert len(pair) == 1 and pair[0].startswith("Seed 0: the control run was built on other recipe decisions")
    s0_file.write_text(json.dumps(s0_cfg))
    cfg_file = runner.runs_root("fer2013") / raw_id / "config.json"     # a raw run whose data cannot be verified
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "source": {k: v for k, v in cfg["source"].items() if k != "catalog_hash"}}))
    with pytest.raises(InvalidInput, match="imported now"):
        ab.run_ab("fer2013", rec2, seeds=[0], preset="smoke", baseline=doc["ab_id"], epochs=1, max_train=1200)
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(InvalidInput, match="raw baseline"):     # resuming it without its baseline is refused
        ab.run_ab("fer2013", None, seeds=[], preset="smoke", ab_id=second["ab_id"], resume=True, baseline="other",
                  epochs=1, max_train=1200)

    # The same steps for every arm (budget "steps"): a recipe that keeps fewer training images than raw draws the
    # raw arm's number per epoch, so curated − raw is judged at equal compute; the raw runs (alike under either
    # budget) are reused from the first A/B.
    import numpy as np

    sig = decisions.load_inputs("fer2013").signals
    few = rec.with_filter("sharpness", min=float(np.nanquantile(sig["sharpness"], 0.97))).replace(name="few")
    steps_seen = []

    def count_steps(ev):
        if ev.stage == "train" and ev.extra.get("steps"):
            steps_seen.append(ev.extra["steps"])

    with pytest.raises(InvalidInput, match="Unknown A/B budget"):
        ab.run_ab("fer2013", few, seeds=[0], preset="smoke", budget="time", epochs=1, max_train=1200)
    eq = ab.run_ab("fer2013", few, seeds=[0], preset="smoke", baseline=doc["ab_id"], budget="steps", epochs=1,
                   max_train=1200, progress=count_steps)
    assert eq["complete"] and eq["budget"] == "steps" and eq["runs"]["raw"] == [raw_id]
    row = eq["result"]["arms"]["curated"]["runs"][0]
    assert row["train_images"] < 1200 == raw["train_images"]             # the recipe kept fewer than raw's 1,200
    assert row["images_per_epoch"] == 1200                                # … and drew raw's 1,200 per epoch
    cfg = runner.run_info("fer2013", eq["runs"]["curated"][0])["config"]
    assert cfg["preset"]["epoch_images"] == 1200
    assert set(steps_seen) == {-(-1200 // 64)}                            # raw's 19 steps of 64, not fewer
    assert "epoch_images" not in runner.run_info("fer2013", raw_id)["config"]["preset"]
    with pytest.raises(InvalidInput, match="different budget"):          # resumed under the other budget: refused
        ab.run_ab("fer2013", None, seeds=[0], preset="smoke", ab_id=eq["ab_id"], resume=True, budget="passes",
                  epochs=1, max_train=1200)
    with pytest.raises(InvalidInput, match="not among the arms"):        # … and the raw arm (or a baseline's)
        ab.run_ab("fer2013", few, seeds=[0], preset="smoke", arms=["curated"], epochs=1, max_train=1200)
    with pytest.raises(InvalidInput, match="raw run of seed 5"):         # steps need the raw run of the seed first
        ab.run_ab("fer2013", few, seeds=[5], preset="smoke", budget="steps", epochs=1, max_train=1200,
                  train_arms=["curated"])
