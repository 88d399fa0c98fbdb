"""Train: does the curation help? Train on the raw data, a recipe or an export; evaluate on the untouched test
split (full and without leaked copies, 95% intervals); find label issues (K-fold + cleanlab); compare raw vs
curated with the same budget and seeds. Every run is a background job with live progress and curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from fer_core import datasets, decisions as dec_mod, drafts, estimates, export, jobs, recipe as recipe_mod, staleness, store
from fer_core.errors import FerError
from fer_core.train import ab as ab_mod, presets, runner
from ui.common import elapsed, job_manager, live, live_jobs, no_dataset_yet, page_done, raw_figure, render_jobs, setup_page
from ui.changes import notice
from ui.curation import current_recipe, recipe_in_use, recipe_state, scan_stamp
from ui.jobs_panel import estimate_caption

name = setup_page("Train", "🏋️")
st.title("🏋️ Train and evaluate")
if not name:
    no_dataset_yet()
ds = datasets.load(name)
jm = job_manager()
st.caption("Training answers one question: *did my curation help?* Models are always evaluated on the official "
           "test split, untouched (FER2013: PrivateTest); validation (PublicTest) only chooses the epoch. "
           "Figures come with 95% bootstrap intervals, and again without the test images that have a copy in "
           "the training split.")

scanned = scan_stamp(name) is not None
inputs = None
if scanned:
    from ui.curation import _load_inputs

    inputs = _load_inputs(name, scan_stamp(name))
now = None   # the current decisions (current recipe, today's signals and overrides): runs made on others are stale
if inputs is not None:
    _rec = current_recipe(name, inputs)
    _dec = dec_mod.run(inputs, _rec, dec_mod.overrides_for(name))
    notice(name, inputs.signals, _dec, _rec)
    now = staleness.Current.of(ds, inputs.signals, _dec, _rec)
_split = inputs.signals["split"] if inputs is not None else ds.catalog["split"]
n_raw_train = int((_split == "train").sum())


def _kept_train(rec=None) -> int:
    """Training images a recipe keeps (the current one by default), with the overrides."""
    if inputs is None:
        return n_raw_train
    d = _dec if rec is None else dec_mod.run(inputs, rec, dec_mod.overrides_for(name))
    return int((d["keep"].to_numpy() & (inputs.signals["split"].to_numpy() == "train")).sum())


def _recipe_file(rec) -> str:
    p = dec_mod.recipes_dir(name) / "_runs"
    p.mkdir(exist_ok=True)
    f = p / f"{rec.fingerprint()}.yaml"
    if not f.exists():
        rec.save(f)
    return str(f)


def _curves(rows_by_name: dict[str, list[dict]], key: str, height: int = 260) -> None:
    data = []
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for k, (nm, rows) in enumerate(rows_by_name.items()):
        if not rows:
            continue
        ep = [r["epoch"] for r in rows]
        c = colors[k % len(colors)]
        data.append({"type": "scatter", "mode": "lines+markers", "x": ep, "y": [r.get("accuracy") for r in rows],
                     "name": f"{nm} train acc", "line": {"color": c, "dash": "dot"}})
        if any("val_accuracy" in r for r in rows):
            data.append({"type": "scatter", "mode": "lines+markers", "x": ep, "y": [r.get("val_accuracy") for r in rows],
                         "name": f"{nm} val acc", "line": {"color": c}})
        data.append({"type": "scatter", "mode": "lines", "x": ep, "y": [r.get("loss") for r in rows],
                     "name": f"{nm} train loss", "yaxis": "y2", "line": {"color": c, "width": 1}, "opacity": 0.5})
    fig = {"data": data, "layout": {"height": height, "margin": {"l": 0, "r": 0, "t": 10, "b": 0},
                                    "xaxis": {"title": {"text": "epoch"}}, "yaxis": {"title": {"text": "accuracy"}},
                                    "yaxis2": {"overlaying": "y", "side": "right", "title": {"text": "loss"},
                                               "showgrid": False},
                                    "legend": {"orientation": "h", "y": -0.25}}}
    st.plotly_chart(raw_figure(fig), width="stretch", key=key)


JOB_WORDS = {"train": "training run", "ab": "raw-vs-curated A/B", "labels": "label-issue search",
             "evaluate": "evaluation"}


def _yardstick_choices() -> list[str]:
    """Other imported datasets' test splits a run of this dataset can be evaluated on (FER+ Test for FER2013)."""
    out = []
    for other in datasets.list_datasets():
        if other == name:
            continue
        try:
            if (datasets.load(other).catalog["split"] == "test").any():
                out.append(f"{other}:test")
        except FerError:
            continue
    return out


def _selection_note(m: dict, cfg: dict, hist: list[dict]) -> str:
    """Which weights the model is: the best epoch's (early stopping restores them) or the last epoch's
    (presets without early stopping, e.g. smoke), with the per-epoch validation peak for comparison."""
    n, best = m.get("epochs_run"), m.get("best_epoch")
    peak = max((h.get("val_accuracy") for h in hist if h.get("val_accuracy") is not None), default=None)
    if presets.selects_epoch(cfg.get("preset")):
        return f"{n} epochs; the model is the best epoch's ({best}, by validation accuracy)"
    how = ("its learning rate decayed to 0 along a cosine: no epoch is selected"
           if (cfg.get("preset") or {}).get("lr_decay") == "cosine" else f"the {m.get('preset')} preset does not select an epoch")
    txt = f"{n} epochs; the model is the **last** epoch's ({how})"
    if best and best != n and peak is not None:
        txt += f"; validation accuracy peaked at epoch {best} ({peak:.1%}) and was not restored"
    return txt


tab_train, tab_labels, tab_ab, tab_runs = st.tabs(["Train", "Label issues", "Raw vs curated (A/B)", "Runs"])

# ---- train ------------------------------------------------------------------------------------------------
with tab_train:
    c = st.columns([1.4, 1, 1, 1])
    sources = ["raw dataset"] + (["current recipe"] if scanned else [])
    saved = drafts.list_recipes(name)   # not the auto-saved draft nor an export's temporary recipe
    if saved:
        sources.append("saved recipe")
    exports = [e for e in export.list_exports() if e["manifest"]["source"]["dataset"] == name]
    if exports:
        sources.append("export")
    src = c[0].selectbox("Train on", sources, key="tr_src", persist_state="session")
    preset = c[1].selectbox("Preset", list(presets.PRESETS), index=0, key="tr_preset", persist_state="session",
                            help="smoke: about a minute (3-5k images); standard: tens of minutes on CPU; "
                                 "full: a GPU schedule (residual network)")
    seed = c[2].number_input("Seed", 0, 10_000, 0, key="tr_seed")
    balance = c[3].selectbox("Class balance", ["none", "source", "class_weight", "sampler"], key="tr_bal",
                             persist_state="session",
                             format_func={"none": "as kept", "source": "source's class shares",
                                          "class_weight": "equal (class weights)", "sampler": "equal (sampler)"}.get,
                             help="as kept: each class as often as the kept images have it. source's class shares: "
                                  "loss weights that give each class its share of the whole training split before "
                                  "the recipe. equal: every class weighs the same.")
    source = {}   # what the run trains on: --recipe or --export (nothing: the raw data)
    extra = st.columns([2, 1])
    if src == "current recipe" and inputs is not None:
        rec = current_recipe(name, inputs)
        rs = recipe_state(name, inputs)
        extra[0].caption(f"{recipe_in_use(name)}, with your overrides and accepted relabels.")
        source["recipe_file"] = _recipe_file(rec)
    elif src == "saved recipe":
        pick = extra[0].selectbox("Recipe", saved, key="tr_saved")
        source["recipe_file"] = dec_mod.recipes_dir(name) / f"{pick}.yaml"
    elif src == "export":
        pick = extra[0].selectbox("Export", [e["name"] for e in exports], key="tr_export")
        source["export_dir"] = next(e["path"] for e in exports if e["name"] == pick)
    aug = extra[1].selectbox("Augmentation", ["preset default", "none", "light", "standard"], key="tr_aug")
    if src == "current recipe":
        n_tr = _kept_train()
    elif src == "saved recipe":
        try:
            n_tr = _kept_train(recipe_mod.Recipe.load(dec_mod.recipes_dir(name) / f"{pick}.yaml"))
        except FerError:
            n_tr = n_raw_train
    elif src == "export":
        n_tr = sum((next(e for e in exports if e["name"] == pick)["manifest"]["counts"]["after"].get("train") or {}).values())
    else:
        n_tr = n_raw_train
    ys = _yardstick_choices()
    also = st.multiselect("Also evaluate on", ys, key="tr_eval_on", persist_state="session",
                          help="Other imported datasets' test splits (e.g. FER+ Test: FER2013's faces under the crowd's "
                               "labels). Classes the model never saw and crowd ties are set aside and counted.") if ys else []
    estimate_caption(estimates.for_training(preset, [n_tr]), upper=presets.get(preset).stops_early)
    if st.button("Start training", type="primary", key="tr_start"):
        run_id = runner.new_run_id(preset, int(seed))
        jm.submit(jobs.train_job(name, run_id, preset, int(seed), "none" if balance == "source" else balance,
                                 augment=None if aug == "preset default" else aug, label=f"{preset} on {src}",
                                 eval_on=tuple(also), prior="source" if balance == "source" else "kept", **source))
        st.session_state["tr_watch"] = run_id
        st.rerun()

    def _live():
        # read live (in the fragment): an A/B or label search that ended meanwhile no longer counts
        for j in jm.active(("train", "ab", "labels"), name)[:1]:
            st.caption(f"A {JOB_WORDS[j.kind]} of this dataset is {'queued' if j.state == 'queued' else 'running'} "
                       f"(started {elapsed(j.created)} ago): a run started now waits for it in the queue.")
        render_jobs(kind=("train",), dataset=name, key=f"train-{name}", on_done_rerun=False)
        rid = st.session_state.get("tr_watch")
        if not rid:
            runs = runner.list_runs(name)
            rid = runs[0]["run_id"] if runs else None
        if not rid:
            return
        try:
            info = runner.run_info(name, rid)
        except Exception:  # noqa: BLE001 - the run folder may not exist yet (job starting)
            return
        state = info["status"].get("state", "starting")
        hist = info["history"]
        finished_seen = st.session_state.setdefault("tr_finished_seen", {})
        if rid not in finished_seen:
            finished_seen[rid] = state in ("done", "failed", "cancelled")
        elif not finished_seen[rid] and state in ("done", "failed", "cancelled"):
            finished_seen[rid] = True
            st.rerun(scope="app")   # the Runs tab and the runs table show the new result
        st.markdown(f"**Run `{rid}`** — {state}" + (f", {len(hist)} epoch(s) done" if hist else ""))
        if hist:
            _curves({"run": hist}, key=f"live-{rid}-{len(hist)}")
        if state == "done" and info["metrics"]:
            m = info["metrics"]
            st.success(f"Test accuracy {m['test']['accuracy']:.1%} "
                       f"(95% interval {m['test']['ci95']['accuracy'][0]:.1%}–{m['test']['ci95']['accuracy'][1]:.1%}), "
                       f"macro-F1 {m['test']['macro_f1']:.3f}; {_selection_note(m, info['config'], hist)}. "
                       "Details in the Runs tab.")
        elif state == "cancelled":
            st.warning("This run was cancelled: no model was kept and it is not reported as finished.")
        elif state == "failed":
            err = info["status"].get("error") or {}
            st.error(f"This run failed: {err.get('message', 'see the job log')}")

    live(_live, ("train", "ab", "labels"), name)

# ---- label issues -----------------------------------------------------------------------------------------
with tab_labels:
    lst = store.family_status(name)["labels"]
    emb_ok = store.family_status(name)["embeddings"]["complete"]
    if lst["complete"]:
        meta = json.loads((store.family_dir(ds, "labels") / "meta.json").read_text())
        st.success(f"Label signals computed {meta.get('finished')}: out-of-fold accuracy {meta['oof_accuracy']:.1%} "
                   f"({', '.join(f'{k} {v:.1%}' for k, v in meta['oof_accuracy_by_source'].items())}); cleanlab flags "
                   f"{meta['cleanlab_issues']:,} of {meta['train_images']:,} training images — too many to drop blindly: "
                   "the recipe cuts on *label quality* (default: the lowest 3% dropped, the lowest 8% to review). "
                   "Review them on the Review page → Label issues.")
    else:
        st.info("Label issues are found by training the compact CNN on K−1 folds and predicting the held-out fold "
                "(every training image gets an out-of-fold prediction), plus a classifier over the face embeddings "
                "when they are computed; cleanlab ranks the images whose given label the models find least likely.")
    if not emb_ok:
        st.caption("Face embeddings are not computed: only the CNN will be used (the embedding classifier flags "
                   "different images; compute embeddings on the Embedding map page for a better ranking).")
    c = st.columns(3)
    folds = c[0].number_input("Folds", 2, 10, 4, key="lb_folds")
    epochs = c[1].number_input("CNN epochs per fold", 1, 50, 7, key="lb_epochs")
    lseed = c[2].number_input("Seed", 0, 10_000, 0, key="lb_seed")
    estimate_caption(estimates.for_labels(n_raw_train, int(folds), int(epochs)))
    if st.button("Find label issues" if not lst["complete"] else "Recompute label issues", type="primary", key="lb_start"):
        jm.submit(jobs.labels_job(name, int(folds), int(epochs), int(lseed)))
        st.rerun()

    live_jobs(kind=("labels",), dataset=name, key=f"labels-{name}")

# ---- A/B --------------------------------------------------------------------------------------------------
with tab_ab:
    if not scanned:
        st.info("The A/B compares the raw data with a recipe: scan the signals first (Quality page).")
    else:
        rec = current_recipe(name, inputs)
        st.markdown("Trains **raw** (every training image, original labels) and **curated** (the current recipe "
                    "with your overrides) with the same architecture, budget and seeds"
                    + (", plus **relabel** (label issues relabelled instead of dropped)" if lst["complete"] else "")
                    + "; evaluates each on the untouched test split; reports the paired difference with its 95% "
                    "interval (over seeds and test images).")
        c = st.columns(3)
        # the form keeps the person's choice for the session (page switches included); a new session starts
        # from the last A/B's preset and seed count
        ab_docs = ab_mod.list_ab(name)        # read once per rerun: the form's default, its baselines, the one reused
        last = next(iter(ab_docs), None)
        ab_preset = c[0].selectbox("Preset", list(presets.PRESETS), key="ab_preset", persist_state="session",
                                   index=list(presets.PRESETS).index(last["preset"]) if last and last.get("preset") in presets.PRESETS else 1)
        n_seeds = c[1].number_input("Seeds", 1, 10, len(last["seeds"]) if last and last.get("seeds") else 3, key="ab_seeds",
                                    persist_state="session",
                                    help="A verdict needs at least 3 seeds: with fewer, the interval ignores how much "
                                         "a model changes from one seed to the next.")
        rel = c[2].checkbox("Relabel arm", value=lst["complete"], disabled=not lst["complete"], key="ab_rel",
                            persist_state="session")
        # the raw arm does not depend on the recipe: a second recipe can reuse an earlier A/B's raw runs
        bases = [d["ab_id"] for d in ab_docs
                 if d["preset"] == ab_preset and (d.get("result") or {}).get("arms", {}).get("raw", {}).get("runs")]
        base = st.selectbox("Raw arm", [None] + bases, key="ab_base", persist_state="session",
                            format_func=lambda b: "train it (same seeds)" if b is None else f"reuse the raw runs of A/B {b}",
                            help="Reusing saves the raw arm's training time; the new A/B takes the earlier one's budget, "
                                 "and seeds it lacks are trained.")
        ab_budget = st.selectbox(
            "Same budget for every arm", ["steps", "passes"], key="ab_budget", persist_state="session",
            format_func={"passes": "the same epochs (an arm that keeps fewer images trains fewer steps)",
                         "steps": "the same gradient steps as raw (curation judged at equal compute)"}.get,
            help="With the same epochs, a recipe that removes 16% of the images also gets 16% less training — "
                 "at a budget where the model is still improving, that alone can cost accuracy. With the same "
                 "steps, every arm's epoch draws as many images as the raw arm's, cycling through its own.")
        c2 = st.columns([1, 1])
        has_votes = store.family_status(name).get("votes", {}).get("complete", False)
        extra_arms = c2[0].multiselect(
            "Extra arms", ["control", "prior"] + (["crowd"] if has_votes else []), key="ab_extra", persist_state="session",
            format_func={"control": "random-removal control", "crowd": "crowd relabel (FER+ votes)",
                         "prior": "recipe + the source's class shares"}.get,
            help="control: removes as many training images per class as the recipe, at random (curated − control "
                 "says whether the recipe picks the right images, not just fewer). prior: the recipe's images with "
                 "loss weights that give each class its share of the whole training split again (a recipe that "
                 "removes 41% of one class and 7% of another also teaches the model that the first is rarer). "
                 "crowd: every voted image relabelled to the crowd majority — the reference automatic curation is "
                 "measured against.")
        ab_ys = c2[1].multiselect("Also evaluate on", _yardstick_choices(), key="ab_eval_on", persist_state="session")
        n_cur = _kept_train()
        if ab_budget == "steps":
            n_cur = n_raw_train
        arms_n = ([] if base else [n_raw_train]) + [n_cur] + ([n_cur] if rel else []) + [n_cur] * len(extra_arms)
        held = next((d.get("changes") or {} for d in ab_docs if d["ab_id"] == base), {}) if base else {}
        held = {k: v for k, v in held.items() if getattr(presets.get(ab_preset), k, None) != v}   # the preset's own: not news
        estimate_caption(estimates.for_training(ab_preset, arms_n * int(n_seeds), **held),
                         upper=presets.get(ab_preset, **held).stops_early, what=f"{len(arms_n) * int(n_seeds)} runs")
        if held:      # the new A/B trains as the baseline's runs did (cli.cmd_ab takes its settings)
            st.caption("As A/B " + f"`{base}`" + "'s raw runs, with " + ", ".join(f"{k} {v}" for k, v in held.items()) + ".")
        if st.button("Compare raw vs curated", type="primary", key="ab_start"):
            arms = ("raw", "curated") + (("relabel",) if rel else ()) + tuple(extra_arms)
            jm.submit(jobs.ab_job(name, _recipe_file(rec), ab_preset, int(n_seeds), relabel_arm=rel, baseline=base,
                                  arms=arms if extra_arms else None, eval_on=tuple(ab_ys), budget=ab_budget))
            st.rerun()
        unfinished = [d for d in ab_mod.list_ab(name) if not d.get("complete")]
        if unfinished and not jm.active(("ab",), name) and not ab_mod.is_running(name, unfinished[0]):
            d0 = unfinished[0]
            n_done = sum(len(v) for v in d0.get("runs", {}).values())
            st.warning(f"A/B `{d0['ab_id']}` stopped before it finished ({n_done} of "
                       f"{len(d0['arms']) * len(d0['seeds'])} runs started). Resuming keeps its finished runs and "
                       "trains only the missing ones.")
            if st.button("Resume this A/B", key="ab_resume"):
                jm.submit(jobs.ab_job(name, resume=d0["ab_id"]))
                st.rerun()

        def _ab_live():
            render_jobs(kind=("ab",), dataset=name, key=f"ab-{name}", on_done_rerun=False)
            docs = ab_mod.list_ab(name)
            if not docs:
                return
            doc = docs[0]
            res = doc.get("result")
            st.markdown(f"**A/B `{doc['ab_id']}`** — preset {doc['preset']}, seeds {doc['seeds']}"
                        + (" — every arm trains as many steps as raw" if doc.get("budget") == "steps" else "")
                        + (f" — raw runs reused from A/B `{doc['baseline']}`" if doc.get("baseline") else "")
                        + ("" if doc.get("complete") else " — *partial: not every run has finished*"))
            if not res:
                return
            for note in res.get("notes", []):
                st.warning(note)
            rows = []
            for arm, r in res["arms"].items():
                for x in r["runs"]:
                    rows.append({"arm": arm, "seed": x["seed"], "test accuracy": x["accuracy"], "macro-F1": x["macro_f1"],
                                 "acc. without leaked": x["accuracy_without_leaked"], "training images": x["train_images"],
                                 "epochs": x["epochs_run"]})
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
            for where, r0 in [(f"{name} test", res)] + list(res.get("yardsticks", {}).items()):
                if where != f"{name} test":
                    st.markdown(f"**On {where}** ({r0.get('images', 0):,} images after what is set aside)")
                    st.dataframe(pd.DataFrame([{"arm": arm, "seed": x["seed"], "accuracy": x["accuracy"],
                                                "macro-F1": x["macro_f1"], "acc. without leaked": x["accuracy_without_leaked"]}
                                               for arm, r in r0["arms"].items() for x in r["runs"]]),
                                 hide_index=True, width="stretch")
                for arm, d in r0["differences"].items():
                    against = d.get("against", "raw")
                    msg = (f"**{arm.split('-')[0]} − {against}** ({where}): "
                           f"{ab_mod.verdict(d['full'], doc['preset'], against)}")
                    if d.get("without_leaked"):
                        msg += (f"  \nwithout the leaked test images: "
                                f"{ab_mod.verdict(d['without_leaked'], doc['preset'], against)}")
                    firm = not d["full"]["within_noise"] and not ab_mod.caveat(d["full"], doc["preset"])
                    (st.info if not firm else st.success if d["full"]["difference"] > 0 else st.warning)(msg)
                for arm, c in r0.get("captured", {}).items():
                    st.caption(f"**{arm} against the crowd relabel** ({where}): "
                               + ab_mod.captured_text(arm, c, doc["preset"]))
                if r0.get("crowd_prior"):
                    st.caption(f"**The crowd relabel's gain, split** ({where}): "
                               + ab_mod.crowd_prior_text(r0["crowd_prior"], doc["preset"]))
                recall = ab_mod.recall_table(r0)
                if recall is not None:
                    st.caption(f"Recall per class on {where} (mean over seeds; *without leaked*: only the test images "
                               "with no copy in training): a cut that strips a small class shows here first.")
                    st.dataframe(recall.style.format("{:.2f}", na_rep="–"), width="stretch")
            st.caption("Learning curves of every arm (the first seed): curation can only help once a model trains "
                       "long enough to memorise noisy labels.")
            _curves({arm: (r["runs"][0]["history"] if r["runs"] else []) for arm, r in res["arms"].items()},
                    key=f"ab-curves-{doc['ab_id']}-{sum(len(r['runs']) for r in res['arms'].values())}")

        live(_ab_live, ("ab",), name, every=2.0)

# ---- runs -------------------------------------------------------------------------------------------------
def _freshness(r: dict) -> tuple[bool | None, str]:
    """Was the run trained on the current decisions? (stale, text for the runs table)."""
    if now is None:
        return None, "cannot tell: signals not scanned"
    stale, why = staleness.is_stale(r["config"], now, ds)
    return stale, ("⚠️ " + why) if stale else "current" if why == "made on the current decisions" else why


with tab_runs:
    runs = runner.list_runs(name)
    if not runs:
        st.info("No runs yet.")
    else:
        table = []
        for r in runs:
            m = r["metrics"] or {}
            cfg = r["config"]
            table.append({"run": r["run_id"], "state": r["status"].get("state"),
                          "source": (cfg.get("source") or {}).get("kind"), "arm": cfg.get("arm"),
                          "preset": (cfg.get("preset") or {}).get("name"), "seed": cfg.get("seed"),
                          "train images": (cfg.get("sizes") or {}).get("train"),
                          "test acc": m.get("test", {}).get("accuracy"),
                          "macro-F1": m.get("test", {}).get("macro_f1"),
                          "acc. w/o leaked": (m.get("test_without_leaked") or {}).get("accuracy"),
                          **{f"acc. on {k}": y["test"]["accuracy"] for k, y in (r.get("yardsticks") or {}).items()},
                          "epochs": m.get("epochs_run"), "decisions": _freshness(r)[1]})
        tdf = pd.DataFrame(table)
        ev = st.dataframe(tdf, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                          key="runs_table")
        sel = ev.selection.rows if ev is not None and ev.selection.rows else [0]
        chosen = [runs[i] for i in sel]
        if len(chosen) > 1:
            st.markdown("**Compare**")
            _curves({r["run_id"][-12:]: r["history"] for r in chosen}, key="cmp-curves")
        r = chosen[0]
        m = r["metrics"]
        st.markdown(f"### Run `{r['run_id']}`")
        if _freshness(r)[0]:
            st.warning(f"Trained on older decisions — {_freshness(r)[1].removeprefix('⚠️ ')}. Train again to measure "
                       "the current curation.", icon="⚠️")
        if not m:
            st.warning(f"This run is {r['status'].get('state')}: it has no results"
                       + (" (cancelled runs keep no model)." if r['status'].get('state') == 'cancelled' else "."))
        else:
            t, tl = m["test"], m["test_without_leaked"]
            k = st.columns(4)
            k[0].metric("Test accuracy", f"{t['accuracy']:.1%}",
                        help=f"95% interval {t['ci95']['accuracy'][0]:.1%}–{t['ci95']['accuracy'][1]:.1%} on {t['n']:,} images")
            k[1].metric("Macro-F1", f"{t['macro_f1']:.3f}",
                        help=f"95% interval {t['ci95']['macro_f1'][0]:.3f}–{t['ci95']['macro_f1'][1]:.3f}")
            if tl:
                k[2].metric("Accuracy without leaked test images", f"{tl['accuracy']:.1%}",
                            help=f"{m.get('test_leaked_images', 0):,} test images with a training copy left out; 95% "
                                 f"interval {tl['ci95']['accuracy'][0]:.1%}–{tl['ci95']['accuracy'][1]:.1%}")
            selects = presets.selects_epoch(r["config"].get("preset"))
            k[3].metric("Val accuracy (model selection)" if selects else "Val accuracy (last epoch's model)",
                        f"{m['val_accuracy']:.1%}", help="Of the kept model, with the test-time flip; the per-epoch "
                        "figures in the curves are without it.")
            st.caption(f"95% intervals: accuracy {t['ci95']['accuracy'][0]:.1%}–{t['ci95']['accuracy'][1]:.1%}, "
                       f"macro-F1 {t['ci95']['macro_f1'][0]:.3f}–{t['ci95']['macro_f1'][1]:.3f}; "
                       f"{m['train_images']:,} training images, {_selection_note(m, r['config'], r['history'])}, "
                       f"{m['train_seconds']:.0f} s.")
            cc = st.columns([1.2, 1])
            with cc[0]:
                cls = m["classes"]
                conf = np.array(t["confusion"])
                rown = conf / np.maximum(conf.sum(1, keepdims=True), 1)
                fig = {"data": [{"type": "heatmap", "z": rown.round(3).tolist(), "x": cls, "y": cls,
                                 "colorscale": "Blues", "text": conf.tolist(), "texttemplate": "%{text}",
                                 "hovertemplate": "true %{y} → predicted %{x}: %{text} (%{z:.0%} of the row)<extra></extra>"}],
                       "layout": {"height": 380, "margin": {"l": 0, "r": 0, "t": 30, "b": 0},
                                  "title": {"text": "Confusion matrix (rows: true label; colour: share of the row)"},
                                  "xaxis": {"title": {"text": "predicted"}}, "yaxis": {"autorange": "reversed"}}}
                st.plotly_chart(raw_figure(fig), width="stretch", key=f"conf-{r['run_id']}")
            with cc[1]:
                rec_ = t["per_class_recall"]
                fig = {"data": [{"type": "bar", "x": list(rec_), "y": [v if v is not None else 0 for v in rec_.values()],
                                 "text": [f"{v:.0%}" if v is not None else "" for v in rec_.values()], "textposition": "auto"}],
                       "layout": {"height": 380, "margin": {"l": 0, "r": 0, "t": 30, "b": 0},
                                  "title": {"text": "Recall per class"}, "yaxis": {"range": [0, 1]}}}
                st.plotly_chart(raw_figure(fig), width="stretch", key=f"recall-{r['run_id']}")
            _curves({"run": r["history"]}, key=f"curves-{r['run_id']}")
            d = st.columns(3)
            d[0].download_button("Download metrics (JSON)", json.dumps(m, indent=1), file_name=f"{r['run_id']}-metrics.json",
                                 mime="application/json", key=f"dl-m-{r['run_id']}")
            if r["model"] is not None:
                d[1].download_button("Download model (.keras)", r["model"].read_bytes(), file_name=f"{r['run_id']}.keras",
                                     key=f"dl-k-{r['run_id']}")
            elif r["status"].get("carried"):
                st.caption(f"Carried from another machine ({r['status']['carried'].get('from') or 'date unknown'}) with "
                           "its figures and test predictions, without its weights: it counts in its A/B, but cannot be "
                           "downloaded or evaluated on another yardstick here.")
        if m:
            yrows = [{"yardstick": f"{name}:test (its own)", "images": t["n"], "accuracy": t["accuracy"],
                      "95% interval": f"{t['ci95']['accuracy'][0]:.1%}–{t['ci95']['accuracy'][1]:.1%}",
                      "macro-F1": t["macro_f1"], "acc. w/o leaked": (tl or {}).get("accuracy"), "set aside": ""}]
            for k_, y in (r.get("yardsticks") or {}).items():
                a_ = y.get("set_aside", {})
                yrows.append({"yardstick": k_, "images": y["test"]["n"], "accuracy": y["test"]["accuracy"],
                              "95% interval": f"{y['test']['ci95']['accuracy'][0]:.1%}–{y['test']['ci95']['accuracy'][1]:.1%}",
                              "macro-F1": y["test"]["macro_f1"],
                              "acc. w/o leaked": (y.get("test_without_leaked") or {}).get("accuracy"),
                              "set aside": "; ".join([f"{a_.get('crowd_unsure', 0):,} crowd tie/unknown/not-a-face"]
                                                     + [f"{v:,} {c_} (class never trained)" for c_, v in
                                                        a_.get("unseen_class", {}).items()])})
            st.markdown("**Every yardstick, side by side**")
            st.dataframe(pd.DataFrame(yrows), hide_index=True, width="stretch")
            ys = [y for y in _yardstick_choices() if y not in (r.get("yardsticks") or {})]
            if ys and r["model"] is not None:
                ec = st.columns([2, 1])
                pick = ec[0].multiselect("Evaluate this model on", ys, key=f"ev-on-{r['run_id']}")
                if ec[1].button("Evaluate (no retraining)", key=f"ev-go-{r['run_id']}", disabled=not pick):
                    jm.submit(jobs.evaluate_job(name, r["run_id"], tuple(pick)))
                    st.rerun()
            live_jobs(kind=("evaluate",), dataset=name, key=f"ev-{name}")
        with st.expander("Run configuration"):
            st.json(r["config"])
        if st.button("Delete this run", key=f"del-{r['run_id']}",
                     disabled=r["status"].get("state") == "running"):
            runner.delete_run(name, r["run_id"])
            st.rerun()

page_done()
