"""AppTest (issue 15): the Train page says which weights a run kept, counts only live jobs, shows the newest job's
state after a reload; A/B verdicts from few seeds or the smoke preset carry a caveat and the A/B form keeps its
choices; the sidebar menu says "Home"; the server-time footer only in debug mode; an empty state with a link to
Datasets on every page opened before any import."""

from __future__ import annotations

import json
import time
import tomllib

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, app_page, import_and_scan
from fer_core.progress import atomic_write_json

PAGES = ["pages/2_Quality.py", "pages/3_Duplicates.py", "pages/4_Review.py", "pages/5_Export.py",
         "pages/6_Embedding_map.py", "pages/7_Train.py"]



@pytest.fixture
def tiny(tmp_path, fer_sample):
    """60 real FER2013 images, imported and scanned, as dataset "tiny"."""
    items = list(fer_sample.items())
    import_and_scan(tmp_path, dict(items[:: max(1, len(items) // 60)]), "tiny")
    return "tiny"


def fake_job(kind: str, dataset: str, state: str, pid: int, created: float, summary: str = "") -> str:
    """A job folder exactly as JobManager writes one (job.json + progress.json)."""
    from fer_core.store_paths import jobs_root

    jid = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(created))}-{kind}-{abs(hash((kind, created))) % 10**6:06d}"
    d = jobs_root() / jid
    d.mkdir(parents=True)
    atomic_write_json(d / "job.json", {"id": jid, "kind": kind, "dataset": dataset, "argv": [kind, dataset],
                                       "label": "", "created": created, "pid": pid, "exclusive": f"train-{dataset}"})
    atomic_write_json(d / "progress.json", {"state": state, "stages": {}, "updated": created,
                                            "info": {"summary": summary} if summary else {}})
    return jid


def fake_run(name: str, run_id: str, preset: str, patience, val_by_epoch: list[float], state: str = "done",
             pid: int | None = None, lr_decay: str | None = None) -> dict:
    """A run folder as runner.train writes one, with real evaluate() metrics over made-up predictions."""
    from fer_core.train import runner
    from fer_core.train.evaluate import evaluate

    classes = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    rdir = runner.runs_root(name) / run_id
    rdir.mkdir(parents=True)
    hist = [{"epoch": i + 1, "accuracy": 0.2 + 0.05 * i, "loss": 1.9 - 0.1 * i, "val_accuracy": v}
            for i, v in enumerate(val_by_epoch)]
    atomic_write_json(rdir / "status.json", {"state": state, "pid": pid, "started": time.time()})
    atomic_write_json(rdir / "config.json", {"run_id": run_id, "dataset": name, "source": {"kind": "raw"},
                                             "preset": {"name": preset, "patience": patience,
                                                        **({"lr_decay": lr_decay} if lr_decay else {})}, "seed": 0,
                                             "classes": classes, "sizes": {"train": 500, "val": 70, "test": 70}})
    atomic_write_json(rdir / "history.json", hist)
    if state != "done":
        return {}
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 70)
    probs = rng.random((70, 7))
    probs[np.arange(70)[:35], y[:35]] += 2
    m = evaluate(y, probs, classes, None, n_boot=50)
    m.update({"run_id": run_id, "dataset": name, "seed": 0, "preset": preset, "val_accuracy": 0.292,
              "epochs_run": len(hist), "train_seconds": 61.0, "train_images": 500,
              "best_epoch": int(np.argmax(val_by_epoch)) + 1})
    atomic_write_json(rdir / "metrics.json", m)
    return m


# ---- Train page (item 3) -------------------------------------------------------------------------------------

def test_runs_tab_says_which_epochs_weights_the_model_is(tiny):
    """A smoke run keeps the last epoch's weights: the page says so (and names the validation peak it did not
    restore) instead of "4 epochs (best 3)" beside a lower "model selection" accuracy."""
    fake_run(tiny, "20250101-000000-smoke-s0-aaaa", "smoke", None, [0.25, 0.30, 0.346, 0.31])
    at = app_page("pages/7_Train.py")
    cap = next(c.value for c in at.caption if "training images" in c.value)
    assert "the model is the **last** epoch's" in cap and "peaked at epoch 3 (34.6%)" in cap, cap
    assert "(best 3)" not in cap
    labels = [m.label for m in at.metric]
    assert "Val accuracy (last epoch's model)" in labels and "Val accuracy (model selection)" not in labels
    assert any("the model is the **last** epoch's" in s.value for s in at.success)  # the live panel too

    # a preset with early stopping restores the best epoch: that is what its text says
    fake_run(tiny, "20250102-000000-standard-s0-bbbb", "standard", 6, [0.3, 0.4, 0.45, 0.44, 0.43])
    at.run()
    cap = next(c.value for c in at.caption if "training images" in c.value)
    assert "the model is the best epoch's (3, by validation accuracy)" in cap, cap
    assert "Val accuracy (model selection)" in [m.label for m in at.metric]

    # the same preset with a cosine decay keeps its last epoch, whatever its patience says, and says why
    fake_run(tiny, "20250103-000000-standard-s0-cccc", "standard", 6, [0.3, 0.4, 0.45, 0.44, 0.43], lr_decay="cosine")
    at.run()
    cap = next(c.value for c in at.caption if "training images" in c.value)
    assert "the model is the **last** epoch's (its learning rate decayed to 0 along a cosine" in cap, cap
    assert "Val accuracy (last epoch's model)" in [m.label for m in at.metric]


def test_train_page_shows_the_newest_jobs_state_and_counts_only_live_jobs(tiny, live_pid):
    """After a reload, an old "finished" banner must not sit above a running run; the queue note names the job
    that is really running and is gone once nothing runs."""
    now = time.time()
    fake_run(tiny, "20250101-000000-smoke-s0-aaaa", "smoke", None, [0.25, 0.3])
    fake_job("train", tiny, "done", 1, now - 600, summary="test accuracy 30%")
    at = app_page("pages/7_Train.py")
    assert any("finished" in s.value for s in at.success)        # the newest job is the finished one: shown
    assert not any("of this dataset is" in c.value for c in at.caption)

    # a new run is running (started in another tab, or before a reload): a fresh session shows it, not the old
    # outcome above it
    fake_run(tiny, "20250102-000000-smoke-s1-bbbb", "smoke", None, [0.2], state="running", pid=live_pid.pid)
    jid = fake_job("train", tiny, "running", live_pid.pid, now - 5)
    at = app_page("pages/7_Train.py")
    assert not any("finished" in s.value for s in at.success), [s.value for s in at.success]
    assert any("20250102-000000-smoke-s1-bbbb" in m.value and "running" in m.value for m in at.markdown)
    assert [c.value for c in at.caption if "of this dataset is running" in c.value][0].startswith(
        "A training run of this dataset is running (started ")

    # it ends: no queue note; its outcome is the one shown
    from fer_core.store_paths import jobs_root
    atomic_write_json(jobs_root() / jid / "progress.json", {"state": "done", "stages": {}, "updated": time.time(),
                                                            "info": {"summary": "newest"}})
    at.run()
    assert not any("of this dataset is" in c.value for c in at.caption)
    assert [s.value for s in at.success if "finished" in s.value] == ["train 'tiny' finished. newest"]


# ---- A/B honesty (item 8) ------------------------------------------------------------------------------------

def _ab_doc(name: str, ab_id: str, preset: str, seeds: list[int], diff: float, lo: float, hi: float, created: float):
    from fer_core.train import ab

    run = {"arm": "raw", "seed": 0, "accuracy": 0.4, "macro_f1": 0.3, "accuracy_without_leaked": 0.39,
           "train_images": 500, "epochs_run": 4, "per_class_recall": None, "history": []}
    res = {"arms": {"raw": {"runs": [dict(run, seed=s) for s in seeds]},
                    "curated": {"runs": [dict(run, seed=s, accuracy=0.4 + diff) for s in seeds]}},
           "differences": {"curated": {"seeds": seeds, "full": {"difference": diff, "ci95": [lo, hi],
                                                                "per_seed": [diff] * len(seeds),
                                                                "within_noise": lo <= 0 <= hi}}}}
    atomic_write_json(ab.ab_root(name) / f"{ab_id}.json",
                      {"ab_id": ab_id, "dataset": name, "preset": preset, "seeds": seeds, "arms": ["raw", "curated"],
                       "runs": {"raw": [], "curated": []}, "complete": True, "created": created, "result": res})


def test_verdict_text_carries_a_caveat_below_three_seeds_or_on_smoke():
    from fer_core.train import ab

    one = {"difference": -0.021, "ci95": [-0.035, -0.008], "per_seed": [-0.021], "within_noise": False}
    assert ab.verdict(one, "smoke").endswith("beyond noise. (1 seed, smoke preset: indicative only — a verdict "
                                             "needs 3+ seeds of the standard or full preset.)")
    assert "(2 seeds: indicative only" in ab.verdict(dict(one, per_seed=[0.1, 0.2]), "standard")
    assert "(smoke preset: indicative only" in ab.verdict(dict(one, per_seed=[0.1, 0.2, 0.3]), "smoke")
    three = dict(one, per_seed=[-0.02, -0.01, -0.03])
    assert ab.verdict(three, "standard").endswith("worse than raw, beyond noise.")
    assert ab.caveat(three, "standard") == ""


def test_ab_tab_caveats_a_one_seed_smoke_verdict_and_the_form_keeps_its_choices(tiny):
    _ab_doc(tiny, "ab-smoke-1", "smoke", [0], -0.021, -0.035, -0.008, time.time())
    at = app_page("pages/7_Train.py")
    msgs = [m.value for m in at.info if "curated − raw" in m.value]
    assert msgs and "worse than raw, beyond noise. (1 seed, smoke preset: indicative only" in msgs[0], msgs
    assert not any("curated − raw" in w.value for w in at.warning)   # not shown as a firm "worse"
    # a new session starts the form from the last A/B's choice, not "standard × 3 seeds"
    assert at.selectbox(key="ab_preset").value == "smoke" and at.number_input(key="ab_seeds").value == 1

    # the person's choice survives leaving the page and coming back
    at.selectbox(key="ab_preset").select("standard")
    at.number_input(key="ab_seeds").set_value(5)
    at.run()
    at.switch_page("pages/2_Quality.py")
    at.run()
    at.switch_page("pages/7_Train.py")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="ab_preset").value == "standard" and at.number_input(key="ab_seeds").value == 5

    # 3 seeds of standard: a firm verdict, no caveat
    _ab_doc(tiny, "ab-std-3", "standard", [0, 1, 2], 0.012, 0.004, 0.02, time.time() + 1)
    at.run()
    ok = [s.value for s in at.success if "curated − raw" in s.value]
    assert ok and ok[0].endswith("better than raw, beyond noise.") and "indicative" not in ok[0]

    # reusing the raw runs of a cosine A/B: the new one trains as they did (no early stopping), and says so
    from fer_core.train import ab
    std = json.loads((ab.ab_root(tiny) / "ab-std-3.json").read_text())     # … unless the preset's own schedule is it
    atomic_write_json(ab.ab_root(tiny) / "ab-std-3.json", {**std, "changes": {"lr_decay": "cosine"}})
    at.selectbox(key="ab_base").select("ab-std-3")
    at.run()
    assert not at.exception, at.exception
    assert not any(c.value.startswith("As A/B") for c in at.caption)
    _ab_doc(tiny, "ab-full-cos", "full", [0, 1, 2], 0.012, 0.004, 0.02, time.time() + 2)
    doc = json.loads((ab.ab_root(tiny) / "ab-full-cos.json").read_text())
    atomic_write_json(ab.ab_root(tiny) / "ab-full-cos.json", {**doc, "changes": {"lr_decay": "cosine"}})
    at.selectbox(key="ab_preset").select("full")
    at.run()
    at.selectbox(key="ab_base").select("ab-full-cos")
    at.run()
    assert not at.exception, at.exception
    assert "As A/B `ab-full-cos`'s raw runs, with lr_decay cosine." in [c.value for c in at.caption]
    est = [c.value for c in at.caption if c.value.startswith("⏱️ Estimated")]
    assert est and not any("early stopping may end it sooner" in c for c in est), est
    at.selectbox(key="ab_base").select(None)          # the full preset's own schedule stops early
    at.run()
    assert any("early stopping may end it sooner" in c.value for c in at.caption if c.value.startswith("⏱️"))


def test_ab_tab_shows_recall_per_class_on_every_yardstick_with_and_without_leaked(tiny):
    """Issue 17: the per-class recall table on the dataset's own test split and on each extra yardstick, a row per
    arm on the whole split and one on the images with no copy in training (where a class's loss is not memorised
    copies)."""
    from fer_core.train import ab

    _ab_doc(tiny, "ab-recall", "standard", [0, 1, 2], 0.01, -0.01, 0.03, time.time() + 5)
    path = ab.ab_root(tiny) / "ab-recall.json"
    doc = json.loads(path.read_text())

    def with_recall(res, base):       # seed s of arm a: recall base + 0.1·s (+0.05 for curated), 0.2 lower unseen
        for arm, r in res["arms"].items():
            for x in r["runs"]:
                v = base + 0.1 * x["seed"] + (0.05 if arm == "curated" else 0)
                x["per_class_recall"] = {"happy": v, "surprise": v / 2}
                x["per_class_recall_without_leaked"] = {"happy": v - 0.2, "surprise": v / 2 - 0.2}
        return res

    res = with_recall(doc["result"], 0.5)
    res["yardsticks"] = {"ferplus:test": dict(with_recall(json.loads(json.dumps(
        {"arms": res["arms"], "differences": {}})), 0.6), images=120)}
    atomic_write_json(path, {**doc, "result": res})
    tab = ab.recall_table(res)
    assert list(tab.index) == ["raw", "raw (without leaked)", "curated", "curated (without leaked)"]
    assert tab.loc["curated", "happy"] == pytest.approx(0.65) and tab.loc["raw (without leaked)", "surprise"] == \
        pytest.approx(0.1)
    at = app_page("pages/7_Train.py")
    caps = [c.value for c in at.caption if c.value.startswith("Recall per class on")]
    assert [c.split(" (")[0] for c in caps] == ["Recall per class on tiny test", "Recall per class on ferplus:test"], caps
    frames = [d.value for d in at.dataframe if "curated (without leaked)" in list(getattr(d.value, "index", []))]
    assert len(frames) == 2, [getattr(d.value, "index", None) for d in at.dataframe]
    assert frames[1].loc["curated", "happy"] == pytest.approx(0.75)          # the yardstick's own figures
    assert frames[0].loc["raw (without leaked)", "happy"] == pytest.approx(0.4)


# ---- polish (item 11) ----------------------------------------------------------------------------------------

def _links(at):
    return [(e.proto.label, e.proto.page) for e in at.sidebar.get("page_link")]


def test_sidebar_menu_says_home_and_the_builtin_menu_is_hidden():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["showSidebarNavigation"] is False and cfg["client"]["toolbarMode"] == "viewer"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    links = _links(at)
    assert [l for l, _ in links] == ["Home", "Datasets", "Quality", "Duplicates & leakage", "Review", "Export",
                                     "Embedding map", "Train"]
    assert links[0][1] == "" and links[1][1] == "Datasets"   # the entry page's address is the root
    at.switch_page("pages/5_Export.py")
    at.run()
    assert _links(at)[0][0] == "Home"      # on every page


@pytest.mark.parametrize("page", PAGES)
def test_every_page_before_any_import_has_an_empty_state_linking_to_datasets(page):
    at = app_page(page)
    assert any("no dataset yet" in i.value.lower() for i in at.info), [i.value for i in at.info]
    main_links = [e.proto for e in at.main.get("page_link")]
    assert [(p.label, p.page) for p in main_links] == [("Go to Datasets", "Datasets")]


def test_server_time_footer_only_in_debug_mode(tiny, monkeypatch):
    def footer(at):
        return [c.value for c in at.caption if c.value.startswith("Server work")]

    monkeypatch.delenv("FER_DEBUG", raising=False)
    at = app_page("pages/3_Duplicates.py")
    assert footer(at) == [] and at.session_state["_last_run_ms"] > 0   # still measured (bench reads it)
    monkeypatch.setenv("FER_DEBUG", "1")
    at.run()
    assert len(footer(at)) == 1


def test_histogram_cut_labels_and_legend():
    """The cut lines carry their labels on the rejected side; per-label series each get a legend entry (a row
    under the plot in ui.views, clear of the cut labels); log axes get ticks in the signal's own units."""
    from fer_core import recipe
    from ui import quality_view as qv

    edges = np.linspace(0, 255, 81)
    counts = {lab: np.ones(80, int) for lab in ("angry", "happy", "sad")}
    d = qv.histogram_data("brightness", edges, counts, recipe.Filter(True, 40.0, 200.0), False)
    assert [(c["text"], c["shade"]) for c in d["cuts"]] == [("min 40", "left"), ("max 200", "right")]
    assert [s["name"] for s in d["series"]] == ["angry", "happy", "sad"] and d["xticks"] is None
    off = qv.histogram_data("brightness", edges, counts, recipe.Filter(False, 40.0, 200.0), False)
    assert off["cuts"] == []                                   # a filter switched off draws no cut
    logd = qv.histogram_data("sharpness", np.log10(np.geomspace(1, 1000, 81)), {"all": np.ones(80, int)},
                             recipe.Filter(True, 10.0, None, review_min=20.0), True)
    assert logd["cuts"][0]["x"] == 1.0 and logd["cuts"][1]["dash"] and logd["cuts"][1]["text"] == "review below 20"
    assert ("1", "1,000") == (logd["xticks"][0][1], logd["xticks"][-1][1])




# ---- no timer reruns on an idle page (latency) ------------------------------------------------------------

PAGES_WITH_JOBS = ["pages/1_Datasets.py", "pages/2_Quality.py", "pages/5_Export.py", "pages/6_Embedding_map.py",
                   "pages/7_Train.py"]


def _timers(monkeypatch, page: str) -> list[float]:
    """The run_every of every fragment the page starts (the sidebar jobs panel included)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    seen, real = [], st.fragment

    def spy(func=None, *, run_every=None):
        if run_every is not None:
            seen.append(float(run_every))
        return real(func, run_every=run_every)

    monkeypatch.setattr(st, "fragment", spy)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()   # a new tab: Home first
    seen.clear()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return seen


def test_an_idle_page_polls_only_through_the_jobs_panel(tiny, live_pid, monkeypatch):
    """Issue 15: every page with a jobs area reran its fragment each second although no job ran (a script run
    that competes with the person's slider moves). Idle: only the sidebar panel's slow 10 s look for jobs
    started elsewhere; while a job of the page's kind runs, its area refreshes every second (2 s for the A/B)."""
    for page in PAGES_WITH_JOBS:
        assert _timers(monkeypatch, page) == [10.0], page
    fake_job("train", tiny, "running", live_pid.pid, time.time() - 5)
    timers = _timers(monkeypatch, "pages/7_Train.py")
    assert sorted(timers) == [1.0, 2.0], timers       # the run's live area; the panel speeds up to 2 s
    assert _timers(monkeypatch, "pages/5_Export.py") == [2.0]   # not an export: only the panel polls
