"""AppTest: the Train page starts a smoke run and shows progress and results; the Label-issues queue accepts a
relabel (stored as an override)."""

from __future__ import annotations

import time

import pytest

from conftest import app_page
from waiting import wait_job, wait_moving
from fer_core import datasets, review

pytestmark = pytest.mark.slow



def test_train_page_runs_a_smoke_job_and_shows_results(fer2013_workspace):
    from fer_core.train import runner

    at = app_page("pages/7_Train.py", timeout=180)
    assert at.selectbox(key="tr_src").options[:2] == ["raw dataset", "current recipe"]
    at.selectbox(key="tr_preset").select("smoke")
    at.button(key="tr_start").click()
    at.run()
    rid = at.session_state["tr_watch"]
    seen_progress = False

    def page_progress() -> tuple:
        nonlocal seen_progress
        at.run()
        assert not at.exception, at.exception
        texts = tuple(p.proto.text for p in at.get("progress")) if at.get("progress") else ()
        seen_progress |= any("train:" in t and "images/s" in t for t in texts)
        return texts

    wait_moving(lambda: runner.run_info("fer2013", rid)["status"].get("state") in ("done", "failed", "cancelled"),
                page_progress, what="the smoke run started from the page")
    info = runner.run_info("fer2013", rid)
    assert info["status"]["state"] == "done", info["status"]
    assert seen_progress
    at.run()
    assert any("Test accuracy" in s.value for s in at.success), [s.value for s in at.success]
    # the Runs tab: metrics of the selected (latest) run
    labels = [m.label for m in at.metric]
    assert "Test accuracy" in labels and "Macro-F1" in labels and "Accuracy without leaked test images" in labels
    acc = next(m.value for m in at.metric if m.label == "Test accuracy")
    assert acc == f"{info['metrics']['test']['accuracy']:.1%}"


def test_label_issues_queue_accepts_a_relabel(noisy_workspace):
    at = app_page("pages/4_Review.py", timeout=180)
    at.session_state["rv_tab"] = "Label issues"     # lazy tabs: only the open one is drawn
    at.run()
    rel = [b for b in at.button if b.key and b.key.startswith("li_rel_") and not b.disabled]
    assert rel, "no label issue offered"
    iid = rel[0].key[len("li_rel_"):]
    suggested = rel[0].label.split("→")[1].split(" · ")[0].strip()  # the first image's button shows its key (· S)
    rel[0].click()
    at.run()
    assert not at.exception, at.exception
    ov = review.store_for(datasets.load("noisy")).overrides()
    assert list(ov["image_id"]) == [iid] and ov["action"].iat[0] == "relabel" and ov["label"].iat[0] == suggested
    # "Keep as is" on the next one is stored too, and the first no longer shows among the undecided
    keep = next(b for b in at.button if b.key and b.key.startswith("li_keep_"))
    assert keep.key != f"li_keep_{iid}"
    keep.click()
    at.run()
    ov = review.store_for(datasets.load("noisy")).overrides()
    assert len(ov) == 2 and set(ov["action"]) == {"relabel", "keep"}


def test_an_interrupted_ab_can_be_resumed_from_the_page(fer2013_workspace):
    """An A/B whose process died shows as unfinished with a Resume button; resuming finishes it in the
    background with the budget it was started with."""
    from fer_core import decisions, recipe as recipe_mod
    from fer_core.jobs import JobManager
    from fer_core.progress import atomic_write_json
    from fer_core.train import ab

    rec = recipe_mod.default_recipe(decisions.load_inputs("fer2013").signals)
    doc = {"ab_id": "killed-ab", "dataset": "fer2013", "preset": "smoke", "seeds": [0], "recipe": rec.to_dict(),
           "arms": ["raw", "curated"], "changes": {"epochs": 1, "max_train": 600},
           "runs": {"raw": [], "curated": []}, "complete": False, "created": time.time(), "pid": 2 ** 22 + 4321}
    atomic_write_json(ab.ab_root("fer2013") / "killed-ab.json", doc)
    assert not ab.is_running("fer2013", doc)
    at = app_page("pages/7_Train.py", timeout=180)
    assert any("killed-ab" in w.value and "stopped before it finished" in w.value for w in at.warning)
    at.button(key="ab_resume").click()
    at.run()
    assert not at.exception, at.exception
    jobs = JobManager().list(kind="ab", dataset="fer2013")
    assert len(jobs) == 1
    assert JobManager()._meta(jobs[0].id)["argv"] == ["ab", "fer2013", "--resume", "killed-ab"]
    st = wait_job(JobManager(), jobs[0].id)
    assert st.state == "done", (st.state, st.error, JobManager().log(jobs[0].id)[-2000:])
    done = ab.load_ab("fer2013", "killed-ab")
    assert done["complete"] and done["changes"] == {"epochs": 1, "max_train": 600}
    assert done["budget"] == "passes"          # saved before budgets were recorded: resumed with the same passes
    assert [len(done["runs"][a]) for a in ("raw", "curated")] == [1, 1]
    assert done["result"]["arms"]["raw"]["runs"][0]["epochs_run"] == 1
    at.run()
    assert not any("killed-ab" in w.value for w in at.warning)     # finished: no longer offered

    # A second recipe against the same raw runs: the page offers the finished A/B as the raw arm; the new A/B
    # takes its budget, reuses its raw run and trains only the curated arm — at the raw arm's steps when asked
    # (the raw arm is alike under either budget, so an A/B of passes can lend it).
    at.selectbox(key="ab_preset").select("smoke")
    at.run()
    assert at.selectbox(key="ab_base").options[1] == "reuse the raw runs of A/B killed-ab"
    at.selectbox(key="ab_base").select("killed-ab")
    at.number_input(key="ab_seeds").set_value(1)
    at.selectbox(key="ab_budget").select("steps")
    at.button(key="ab_start").click()
    at.run()
    assert not at.exception, at.exception
    job = JobManager().list(kind="ab", dataset="fer2013")[0]
    assert JobManager()._meta(job.id)["argv"][-4:] == ["--baseline", "killed-ab", "--budget", "steps"]
    st = wait_job(JobManager(), job.id)
    assert st.state == "done", (st.state, st.error, JobManager().log(job.id)[-2000:])
    new = next(d for d in ab.list_ab("fer2013") if d.get("baseline") == "killed-ab")
    assert new["complete"] and new["changes"] == done["changes"]
    log = JobManager().log(job.id)
    assert "recall per class (mean over seeds):" in log and "curated (without leaked)" in log, log[-2000:]
    assert new["runs"]["raw"] == done["runs"]["raw"] and new["runs"]["curated"] != done["runs"]["curated"]
    assert new["budget"] == "steps"
    raw_images = done["result"]["arms"]["raw"]["runs"][0]["train_images"]
    assert new["result"]["arms"]["curated"]["runs"][0]["images_per_epoch"] == raw_images
    at.run()
    assert any("raw runs reused from A/B `killed-ab`" in m.value and "as many steps as raw" in m.value
               for m in at.markdown)
    # the A/B's own warnings (ab.image_set_notes: seeds of one arm trained on different decisions) show as such
    new["result"]["notes"] = ["The curated arm's seeds trained on 2 different sets of recipe decisions"]
    atomic_write_json(ab.ab_root("fer2013") / f"{new['ab_id']}.json", new)
    at.run()
    assert any(w.value.startswith("The curated arm's seeds trained on 2 different") for w in at.warning)


def test_quality_page_caps_the_label_cut_per_class(noisy_workspace):
    """The per-class cap of the label cut is on by default (data-derived), shown on the Quality page, and
    turning it off there changes the recipe and the decisions to what `decide` computes without it."""
    from fer_core import decisions, recipe as recipe_mod

    inputs = decisions.load_inputs("noisy")
    rec = recipe_mod.default_recipe(inputs.signals)
    at = app_page("pages/2_Quality.py", timeout=180)
    on = next(c for c in at.checkbox if c.label == "Cap the label cut per class")
    pct = next(n for n in at.number_input if n.label.startswith("At most this share of any one class"))
    assert on.value is True and pct.value == pytest.approx(100 * rec.labels.class_cap)

    def kept(at):
        return next(m for m in at.sidebar.metric if m.label == "Kept").value

    assert kept(at) == f"{int(decisions.run(inputs, rec)['keep'].sum()):,}"
    pct.set_value(1.0)
    at.run()
    assert not at.exception, at.exception
    rec = rec.with_labels(class_cap=0.01)
    assert kept(at) == f"{int(decisions.run(inputs, rec)['keep'].sum()):,}"
    k_capped = kept(at)
    on = next(c for c in at.checkbox if c.label == "Cap the label cut per class")
    on.uncheck()
    at.run()
    assert not at.exception, at.exception
    rec = rec.with_labels(class_cap=None)
    assert kept(at) == f"{int(decisions.run(inputs, rec)['keep'].sum()):,}"
    assert int(kept(at).replace(",", "")) < int(k_capped.replace(",", ""))      # the uncapped cut takes more
