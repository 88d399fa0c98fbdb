"""Shared curation state for the Quality, Duplicates, Review and Export pages.

- signal inputs (signals table + duplicate pairs) cached per dataset and scan stamp;
- the current recipe per dataset in session state (survives page switches), with its name, whether it
  has unsaved changes, and save / load / reset controls; unsaved changes are auto-saved as a draft on the
  server (fer_core.drafts) and restored in a new tab or after a reload;
- overrides read from and written to SQLite at each click;
- clickable montages (a plotly image with one invisible point per tile: clicking a tile selects it) and
  an image inspector with keep / reject / relabel / clear.
"""

from __future__ import annotations

import base64
import time

import cv2
import numpy as np
import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from fer_core import datasets, decisions as dec_mod, drafts, jobs, recipe as recipe_mod, review, store
from fer_core.errors import FerError
from fer_core.montage import load_gray_or_color, montage
from fer_core.signals.base import COLUMN_META
from fer_core.sources.labels import CANONICAL
from fer_core.workspace import Workspace
from ui.common import job_manager, live_jobs, no_dataset_yet, setup_page, show_error
from ui.views import montage_view, rows_view

LABEL_ORDER = list(CANONICAL)


# ---- inputs ---------------------------------------------------------------------------------------

def scan_stamp(name: str) -> tuple | None:
    ws = Workspace(name)
    st_ = ws.status()
    if not (st_["quality"]["complete"] and st_["duplicates"]["complete"]):
        return None
    try:    # a split assigned or changed outside this page (the CLI, another session) is part of the inputs
        split = ws.dataset.paths.split_assignment.stat().st_mtime_ns
    except FileNotFoundError:
        split = None
    return (ws.dataset.meta["catalog_hash"], ("split", split)) + tuple(
        (f, v["version"], v["finished"]) for f, v in st_.items() if v["complete"])


@st.cache_resource(max_entries=4, show_spinner="Loading signals…")
def _load_inputs(name: str, stamp: tuple) -> dec_mod.Inputs:
    return Workspace(name).inputs()   # once per dataset and signal tables, shared by the sessions


def curation_page(title: str, icon: str, heading: str | None = None) -> tuple[str, dec_mod.Inputs]:
    """The preamble of every page that works on a scanned dataset: page setup and menu, the title, the empty
    state before any import, the scan panel while signals are missing (the page stops there)."""
    name = setup_page(title, icon)
    st.title(f"{icon} {heading or title}")
    if not name:
        no_dataset_yet()
    inputs = inputs_or_scan(name)
    if inputs is None:
        st.stop()
    return name, inputs


def engine_choice(key: str) -> dict:
    """Where a scan's image work runs: this machine (the default) or a Ray cluster (issue 19). Defaults from
    ``FER_ENGINE`` / ``RAY_ADDRESS``; the choice is kept for the browser session. Returns scan_job's keywords."""
    from fer_core import config

    if "engine_choice" not in st.session_state:
        st.session_state["engine_choice"] = config.engine()
    if "engine_address" not in st.session_state:
        st.session_state["engine_address"] = config.ray_address() or ""
    with st.expander("Where it runs: " + ("a Ray cluster" if st.session_state["engine_choice"] == "ray"
                                          else "this machine"), expanded=False):
        eng = st.radio("Engine", ["local", "ray"], key=f"{key}_engine", horizontal=True,
                       index=["local", "ray"].index(st.session_state["engine_choice"]),
                       format_func={"local": "this machine (process pool)", "ray": "Ray cluster (Ray Data)"}.get,
                       help="Ray: every per-image family runs on the cluster's actors; the cluster must see this "
                            "cache at the same path (README, Ray). Without an address a local Ray is started.")
        addr = st.text_input("Ray address", value=st.session_state["engine_address"], key=f"{key}_address",
                             placeholder="ray://HEAD:10001, HOST:6379 or auto (empty: a local Ray)",
                             disabled=eng != "ray")
        st.session_state["engine_choice"], st.session_state["engine_address"] = eng, addr
    if st.session_state["engine_choice"] != "ray":
        return {}
    return {"engine": "ray", "address": st.session_state["engine_address"].strip() or None}


def inputs_or_scan(name: str) -> dec_mod.Inputs | None:
    """The dataset's signal inputs, or a scan panel (button + progress) when they are missing."""
    stamp = scan_stamp(name)
    if stamp is not None:
        return _load_inputs(name, stamp)
    st.warning(f"The signals of **{name}** are not computed yet (or are out of date). A scan computes them once "
               "(a few seconds for FER2013) and caches them; it resumes if interrupted.")
    running = job_manager().active("scan", name)
    where = engine_choice("scan")
    if st.button("Scan signals", type="primary", disabled=bool(running), key="scan_btn"):
        job_manager().submit(jobs.scan_job(name, **where))
        st.rerun()

    live_jobs(kind=("scan",), dataset=name, key=f"scan-{name}")
    return None


def face_signals_panel(name: str, need: str = "faces") -> bool:
    """True when the face signals (``need``: faces or embeddings) are computed; otherwise a panel that
    says what is missing and offers to compute them in the background."""
    status = store.family_status(name)
    if status[need]["complete"] and (need != "embeddings" or status["faces"]["complete"]):
        if not status["faces_mtcnn"]["complete"] and store.family_available("faces_mtcnn")[0]:
            with st.expander("Compare with MTCNN"):
                st.caption("YuNet produces the default face score. MTCNN (TensorFlow) can score the same images for "
                           "comparison; its column appears as “Face score (MTCNN)” (about a minute for FER2013).")
                if st.button("Compute MTCNN face scores", key=f"mtcnn_btn_{need}",
                             disabled=bool(job_manager().active("faces", name))):
                    job_manager().submit(jobs.scan_job(name, ("faces_mtcnn",), kind="faces"))
                    st.rerun()
        return True
    ok, why = store.family_available(need)
    if not ok:
        st.warning(f"Face signals are unavailable: {why}. Everything else in the app works without them.")
        return False
    st.info("Face signals (YuNet face validity, SFace embeddings) are computed once per dataset in the background; "
            "they resume if interrupted.")
    from fer_core import estimates
    from ui.jobs_panel import estimate_caption

    estimate_caption(estimates.for_faces(int(datasets.load(name).meta.get("n_images", 0))))
    running = job_manager().active("faces", name)
    where = engine_choice(f"faces_{need}")
    if st.button("Compute face signals", type="primary", key=f"faces_btn_{need}", disabled=bool(running)):
        job_manager().submit(jobs.scan_job(name, ("faces", "embeddings"), kind="faces", **where))
        st.rerun()

    live_jobs(kind=("faces",), dataset=name, key=f"faces-{name}")
    return False


# ---- recipe state -------------------------------------------------------------------------------

def _rs(name: str) -> dict:
    return st.session_state.setdefault("recipe_state", {}).setdefault(name, {})


DEFAULT_LABEL = "default (data-derived)"


def _draft_key(rs: dict) -> tuple:
    return rs["recipe"].fingerprint(), rs.get("saved_fp"), rs.get("name"), rs.get("base")


def _base_recipe(name: str, inputs: dec_mod.Inputs, base: str | None) -> tuple[recipe_mod.Recipe, str, str | None]:
    """(recipe, label, base) a draft started from: the saved recipe ``base``, or the data-derived default
    (also when that file is gone or no longer reads)."""
    if base:
        try:
            return recipe_mod.Recipe.load(dec_mod.recipes_dir(name) / f"{base}.yaml"), base, base
        except FerError:
            pass
    return recipe_mod.default_recipe(inputs.signals, name="default"), DEFAULT_LABEL, None


def _restore_draft(name: str, inputs: dec_mod.Inputs, rs: dict) -> bool:
    """A new session (tab, reload) starts from the dataset's auto-saved draft when there is one."""
    try:
        d = drafts.read(name)
    except FerError as exc:
        rs["draft_error"] = exc
        return False
    if d is None:
        return False
    base_rec, _, base = _base_recipe(name, inputs, d.base)
    rs.update({"recipe": d.recipe, "name": d.label, "saved_fp": base_rec.fingerprint(), "base": base,
               "epoch": rs.get("epoch", 0) + 1, "catalog_hash": inputs.catalog_hash, "restored": d.updated})
    return True


def recipe_state(name: str, inputs: dec_mod.Inputs) -> dict:
    rs = _rs(name)
    cols = tuple(c for c in recipe_mod.filter_columns() if c in inputs.signals)
    if "recipe" not in rs and _restore_draft(name, inputs, rs):
        rs["columns"], rs["draft_key"] = cols, _draft_key(rs)
        return rs
    untouched_default = rs.get("name", "").startswith("default") and rs.get("saved_fp") == rs.get("recipe", recipe_mod.Recipe()).fingerprint()
    if (rs.get("catalog_hash") != inputs.catalog_hash or "recipe" not in rs
            or (rs.get("columns") != cols and untouched_default)):  # new signals (faces, labels) join the default
        rec = recipe_mod.default_recipe(inputs.signals, name="default")
        rs.update({"recipe": rec, "name": DEFAULT_LABEL, "saved_fp": rec.fingerprint(), "base": None,
                   "epoch": rs.get("epoch", 0) + 1, "catalog_hash": inputs.catalog_hash})
        rs["draft_key"] = _draft_key(rs)
    rs["columns"] = cols
    return rs


def current_recipe(name: str, inputs: dec_mod.Inputs) -> recipe_mod.Recipe:
    return recipe_state(name, inputs)["recipe"]


def tuning_run(name: str, inputs: dec_mod.Inputs, dirty_at_full_run: bool) -> recipe_mod.Recipe:
    """The start of a page fragment that tunes the recipe (Quality's cuts, Duplicates' settings): a fragment
    rerun is timed as the run, the draft is auto-saved (recipe_sidebar does it on a full run), the whole page
    reruns when the sidebar's "saved / unsaved changes" line must change; returns the recipe as this run's
    callbacks left it (a change makes a new recipe: never hold one from the full run)."""
    ctx = get_script_run_ctx()
    if ctx is not None and ctx.fragment_ids_this_run:
        st.session_state["_run_started"] = time.perf_counter()
    sync_draft(name)
    if dirty(name) != dirty_at_full_run:
        st.rerun()
    return current_recipe(name, inputs)


def change_recipe(name: str, change) -> recipe_mod.Recipe:
    """Replace the session's current recipe of ``name`` by ``change(recipe)`` (recipes are immutable: a widget's
    callback makes a new one, e.g. ``lambda r: r.with_filter("sharpness", min=250.0)``); returns it."""
    rs = _rs(name)
    rs["recipe"] = change(rs["recipe"])
    return rs["recipe"]


def set_recipe(name: str, rec: recipe_mod.Recipe, label: str, saved: bool, base: str | None = None) -> None:
    """Make ``rec`` the current recipe; ``base``: the saved recipe file it is (None: default or upload)."""
    rs = _rs(name)
    rs["recipe"] = rec
    rs["name"] = label
    rs["saved_fp"] = rec.fingerprint() if saved else None
    rs["base"] = base
    rs.pop("restored", None)
    rs["epoch"] = rs.get("epoch", 0) + 1  # widgets bound to the recipe re-initialise from it
    sync_draft(name)


def sync_draft(name: str) -> None:
    """After a change of the current recipe: write it as the dataset's draft while it differs from the recipe
    it started from, clear the draft when it no longer does. Runs only on a change made in this session, so
    a second tab that merely reruns never overwrites another tab's draft."""
    rs = _rs(name)
    if "recipe" not in rs or rs.get("draft_key") == _draft_key(rs):
        return
    rs["draft_key"] = _draft_key(rs)
    try:
        if dirty(name):
            drafts.write(name, rs["recipe"], rs.get("base"), rs["name"])
            rs["draft_saved"] = time.time()
        else:
            drafts.clear(name)
            rs.pop("draft_saved", None)
    except FerError as exc:
        show_error(exc)


def _hhmm(t: float) -> str:
    lt = time.localtime(t)
    return time.strftime("%H:%M" if lt[:3] == time.localtime()[:3] else "%d %b, %H:%M", lt)


def recipe_in_use(name: str) -> str:
    """One line: the recipe that Export and Train (current recipe) use, and whether it is saved."""
    rs = _rs(name)
    if "recipe" not in rs:
        return "Export and Train use: the data-derived default recipe"
    if dirty(name):
        when = rs.get("draft_saved") or rs.get("restored")
        state = "unsaved draft" + (f", auto-saved {_hhmm(when)}" if when else "")
    else:
        state = "saved" if rs.get("base") else "unchanged"
    return f"Export and Train use: `{rs['name']}` ({state})"


def recipe_in_use_caption(name: str) -> None:
    st.caption(recipe_in_use(name))


def wkey(name: str, *parts) -> str:
    """Widget key bound to the recipe; changes when a recipe is loaded/reset so widgets re-read it."""
    return "w::" + name + "::" + str(_rs(name).get("epoch", 0)) + "::" + "::".join(map(str, parts))


def dirty(name: str) -> bool:
    rs = _rs(name)
    return rs.get("saved_fp") != rs["recipe"].fingerprint()


def _share_cap(name: str, key: str, cur: float | None, default: float, step: float, check_label: str,
               share_label: str, help: str) -> float | None:
    """A checkbox + percentage for a per-class cap (None = off); returns the share (0–1) the controls now say."""
    on = st.checkbox(check_label, value=cur is not None, key=wkey(name, key + "_on"), help=help)
    pct = st.number_input(share_label, min_value=0.0, max_value=100.0, step=step,
                          value=float(round(100 * (cur if cur is not None else default), 2)),
                          key=wkey(name, key), disabled=not on)
    return round(pct / 100, 4) if on else None


def recipe_sidebar(name: str, inputs: dec_mod.Inputs) -> None:
    rs = recipe_state(name, inputs)
    rdir = dec_mod.recipes_dir(name)
    sync_draft(name)   # changes made by widget callbacks before this run
    with st.sidebar:
        st.markdown(f"**Recipe:** `{rs['name']}`" + ("  \n:orange[● unsaved changes]" if dirty(name) else "  \n:green[saved]"))
        recipe_in_use_caption(name)
        if err := rs.pop("draft_error", None):
            show_error(err)
        if rs.get("restored") and dirty(name):
            st.info(f"Restored your unsaved changes from {_hhmm(rs['restored'])} (auto-saved draft).")
            if st.button("Discard them", key=f"rdraft-discard-{name}",
                         help="Go back to the saved recipe they started from (or the data-derived default)."):
                rec, label, base = _base_recipe(name, inputs, rs.get("base"))
                set_recipe(name, rec, label, saved=True, base=base)
                st.rerun()
        with st.expander("Save / load recipe"):
            new_name = st.text_input("Save as", value=rs["name"].split(" ")[0] if rs["name"] else "", key=f"rsave-{name}")
            if st.button("Save recipe", key=f"rsave-btn-{name}"):
                try:
                    from fer_core.store_paths import check_name
                    check_name(new_name, "recipe")
                    rec = rs["recipe"].replace(name=new_name)
                    rec.save(rdir / f"{new_name}.yaml")
                    set_recipe(name, rec, new_name, saved=True, base=new_name)
                    st.session_state["_recipe_msg"] = f"Saved as {rdir / (new_name + '.yaml')}"
                    st.rerun()
                except Exception as exc:  # noqa: BLE001
                    show_error(exc)
            saved = drafts.list_recipes(name)
            if saved:
                pick = st.selectbox("Saved recipes", saved, key=f"rload-{name}")
                if st.button("Load", key=f"rload-btn-{name}"):
                    try:
                        rec = recipe_mod.Recipe.load(rdir / f"{pick}.yaml")
                        set_recipe(name, rec, pick, saved=True, base=pick)
                        st.rerun()
                    except Exception as exc:  # noqa: BLE001
                        show_error(exc)
            up = st.file_uploader("Load a recipe file", type=["yaml", "yml", "json"], key=f"rup-{name}")
            if up is not None and st.button("Use uploaded recipe", key=f"rup-btn-{name}"):
                try:
                    rec = recipe_mod.Recipe.from_text(up.getvalue(), up.name)
                    set_recipe(name, rec, rec.name or up.name, saved=False)
                    st.rerun()
                except Exception as exc:  # noqa: BLE001
                    show_error(exc)
            st.download_button("Download YAML", rs["recipe"].to_yaml, file_name=f"{rs['recipe'].name}.yaml",
                               mime="text/yaml", key=f"rdl-{name}")
            if st.button("Reset to data-derived defaults", key=f"rreset-{name}"):
                rec = recipe_mod.default_recipe(inputs.signals, name="default")
                set_recipe(name, rec, DEFAULT_LABEL, saved=True)
                st.rerun()
        if rs["recipe"].label_cut(inputs.signals.columns):
            pol = st.radio("Label issues below the cut", ["drop", "relabel"], horizontal=True,
                           index=["drop", "relabel"].index(rs["recipe"].labels.policy), key=wkey(name, "label_policy"),
                           help="drop: reject them; relabel: keep them under the suggested label (a keep override "
                           "on an image reverses its relabel). The cut is the Label margin (or Label quality) filter.")
            if pol != rs["recipe"].labels.policy:
                rs["recipe"] = rs["recipe"].with_labels(policy=pol)
                st.rerun()
            new = _share_cap(name, "label_cap", rs["recipe"].labels.class_cap, 0.06, 0.5,
                             "Cap the label cut per class", "At most this share of any one class (%)",
                             "The label cut takes at most this share of any one class; the best-scored flagged "
                             "images beyond it stay, in the review queue. A global cut on label quality strips rare "
                             "classes (on FER2013 it took 31% of disgust), so the default caps it.")
            if new != rs["recipe"].labels.class_cap:
                rs["recipe"] = rs["recipe"].with_labels(class_cap=new)
                st.rerun()
        if "crowd_label" in inputs.signals:
            lp = rs["recipe"].labels
            src = inputs.signals["crowd_source"].replace("", np.nan).dropna()
            own = bool(len(src)) and (src == name).all()
            crowd = st.radio("Crowd votes" + ("" if own else f" (through the link to {src.iat[0] if len(src) else '?'})"),
                             ["off", "relabel"], horizontal=True, index=["off", "relabel"].index(lp.crowd),
                             key=wkey(name, "crowd_policy"),
                             format_func=lambda v: {"off": "labels as given", "relabel": "relabel to the crowd majority"}[v],
                             help="relabel: every training image with votes takes the majority of its ten FER+ votes as "
                                  "its label (counted in the summary and the export manifest).")
            unsure = st.checkbox("Set aside images whose votes give no single expression", lp.crowd_unsure == "drop",
                                 key=wkey(name, "crowd_unsure"),
                                 help="A tie, an unknown or not-a-face majority, or a class this dataset lacks (FER+'s "
                                      "contempt in FER2013): rejected with reason 'crowd'.")
            if crowd != lp.crowd or unsure != (lp.crowd_unsure == "drop"):
                rs["recipe"] = rs["recipe"].with_labels(crowd=crowd, crowd_unsure="drop" if unsure else "keep")
                st.rerun()
        new = _share_cap(name, "class_cap", rs["recipe"].class_cap, 0.25, 1.0,
                         "Cap what the recipe removes per class", "At most this share of any class (%)",
                         "All automatic cuts together (quality, faces, labels, duplicates) remove at most this share "
                         "of any class in a split; beyond it the least certain rejections are spared and sent to "
                         "review. Leaked copies of val/test images are always removed (they count towards the "
                         "share). On FER2013 the default recipe removes 38% of training disgust.")
        if new != rs["recipe"].class_cap:
            rs["recipe"] = rs["recipe"].replace(class_cap=new)
            st.rerun()
        if msg := st.session_state.pop("_recipe_msg", None):
            st.success(msg)


# ---- decisions and overrides ------------------------------------------------------------------------

def review_store(name: str) -> review.ReviewStore:
    return Workspace(name).review


def current_decisions(name: str, inputs: dec_mod.Inputs) -> pd.DataFrame:
    rec = current_recipe(name, inputs)
    sync_draft(name)   # changes made by the page's widgets in this run
    dec = Workspace(name).decide(rec, inputs=inputs)
    from ui.changes import notice   # "Since you last looked: face signals were added; rejected 4,028 → 5,126"

    notice(name, inputs.signals, dec, rec)
    return dec


def session_author() -> str:
    sid = st.session_state.setdefault("_author", f"session-{int(time.time() * 1000) % 10**9}")
    return sid


def set_override(name: str, ids, action: str, label: str | None = None) -> bool:
    """Store a manual decision; a failure (e.g. a full disk) is shown as a sentence and nothing is half-saved."""
    try:
        review_store(name).set(ids, action, label=label, author=session_author())
        return True
    except FerError as exc:
        _override_failed(exc)
        return False


def undo_override(name: str):
    """Undo this person's last override; returns the undone event (None if nothing, or on an error shown)."""
    try:
        return review_store(name).undo(author=session_author())
    except FerError as exc:
        _override_failed(exc)
        return None


def _override_failed(exc: FerError) -> None:
    """Shown now, and kept for the next run: callers rerun after a click, which would wipe the message."""
    show_error(exc)
    st.session_state["_override_error"] = exc


def summary_sidebar(inputs: dec_mod.Inputs, dec: pd.DataFrame) -> dict:
    s = recipe_mod.summarize(inputs.signals, dec)
    with st.sidebar:
        st.markdown("**Decisions**")
        c1, c2 = st.columns(2)
        c1.metric("Kept", f"{s['kept']:,}")
        c2.metric("Rejected", f"{s['rejected']:,}")
        rows = [f"{k}: {v['kept']:,} kept / {v['rejected']:,} rejected" for k, v in s["by_split"].items()]
        st.caption("  \n".join(rows))
        if s.get("label_capped"):
            st.caption(f"{s['label_capped']:,} label issues spared by the per-class cap (left for review)")
        if s.get("class_capped"):
            st.caption(f"{s['class_capped']:,} rejections spared by the recipe's per-class cap (left for review)")
        for w in s.get("class_removals", []):
            st.warning(recipe_mod.removal_text(w) + ": a small class can vanish (a model trained on it then "
                       "stops predicting it). Cap what the recipe removes per class (above) or loosen the cuts "
                       "that hit it.", icon="⚖️")
        for w in s.get("split_rejections", []):
            st.warning(recipe_mod.split_rejection_text(w) + ".", icon="🚨")
        for w in s.get("class_imbalance", []):
            st.warning(recipe_mod.imbalance_text(w) + ": a small class can vanish from training (its test recall "
                       "then collapses). Check the class on the Review page or loosen this cut.", icon="⚖️")
        labs = [l for l in LABEL_ORDER if l in s["by_label"]]
        rows_view("sb_labels", [{"label": l, "parts": [s["by_label"][l]["kept"], s["by_label"][l]["rejected"]],
                                 "text": f"{s['by_label'][l]['rejected']:,} out"} for l in labs],
                  ["kept", "rejected"], ["#2e9f43", "#d62728"])
        if s["by_reason"]:
            funnel = recipe_mod.funnel(dec)
            rows_view("sb_funnel", [{"label": k, "parts": [v], "text": f"{v:,}"} for k, v in funnel], ["images"],
                      ["#4c78a8"])
            st.caption("Funnel: images left in scope after each family of reasons, in order.")
    return s


# ---- montages and the inspector ------------------------------------------------------------------

def _data_uri(img: np.ndarray) -> str:
    """JPEG (quality 90): a 24-tile montage is ~46 KiB against ~182 KiB as PNG, sent on every slider move."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def clickable_montage(name: str, inputs: dec_mod.Inputs, ids: list, key: str, borders=None, captions=None,
                      ncols: int = 12, tile: int = 64, hover: list[str] | None = None, picker: bool = True) -> None:
    """A montage; clicking a tile (or choosing it in the list under it) opens it in the inspector.

    ``ids`` may contain None for an empty tile (used to start each duplicate group on a new row)."""
    real = [i for i in ids if i is not None]
    if not real:
        st.caption("No images.")
        return
    sig = inputs.signals
    all_ids = sig["id"].to_numpy()
    ds = datasets.load(name)
    paths_all = sig["path"].to_numpy()
    labels_all = sig["label"].to_numpy()
    pos = {i: int(np.searchsorted(all_ids, i)) for i in real}
    imgs = [None if i is None else ds.image_path(paths_all[pos[i]]) for i in ids]
    img, layout = montage(imgs, ncols=ncols, tile=tile, borders=borders, captions=captions)
    blank = [k for k, i in enumerate(ids) if i is None]
    if blank:  # paint empty tiles white
        step = tile + layout.pad
        for k in blank:
            r, c = divmod(k, layout.ncols)
            img[r * step:r * step + tile, c * step:c * step + tile] = 255
    h, w = img.shape[:2]
    step = tile + layout.pad
    where = [k for k, i in enumerate(ids) if i is not None]
    text = [hover[k] for k in where] if hover else [f"{labels_all[pos[ids[k]]]}" for k in where]
    titles = dict(zip(where, text))
    tiles = [None if i is None else {"id": str(i), "title": str(titles[k])} for k, i in enumerate(ids)]
    chosen = montage_view(key, _data_uri(img), w, tile, step, layout.ncols, tiles, alt=f"{len(real)} images")
    if chosen:
        st.session_state["inspect"] = chosen
    if not picker:
        return
    labels_for = [(captions[k] if captions else text[n]) for n, k in enumerate(where)]
    choice = st.selectbox("Inspect", ["—"] + [f"{n + 1}: {c}" for n, c in enumerate(labels_for)],
                          key=f"pick_{key}", label_visibility="collapsed",
                          format_func=lambda c: "Inspect an image of this grid…" if c == "—" else f"image {c}")
    if choice == "—":   # cleared (or its tab was reopened): the same pick works again
        st.session_state.pop(f"_lastpick_{key}", None)
    else:
        idx = int(choice.split(":")[0]) - 1
        if st.session_state.get(f"_lastpick_{key}") != choice:
            st.session_state[f"_lastpick_{key}"] = choice
            st.session_state["inspect"] = ids[where[idx]]


def fmt_value(col: str, v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    if isinstance(v, (float, np.floating)):
        return f"{v:,.4g}"
    return str(v)


def inspector(name: str, inputs: dec_mod.Inputs, dec: pd.DataFrame, rec: recipe_mod.Recipe) -> None:
    image_id = st.session_state.get("inspect")
    st.markdown("#### Inspector")
    if not image_id:
        st.caption("Click an image (or pick it in the list under a grid) to see it large with its signals.")
        return
    sig = inputs.signals
    pos = int(np.searchsorted(sig["id"].to_numpy(), image_id))
    if pos >= len(sig) or sig["id"].iat[pos] != image_id:
        st.caption("That image is not in this dataset.")
        return
    row, d = sig.iloc[pos], dec.iloc[pos]
    ds = datasets.load(name)
    img = load_gray_or_color(ds.image_path(row["path"]))
    if img is not None:
        big = cv2.resize(img, (192, int(192 * img.shape[0] / img.shape[1])), interpolation=cv2.INTER_NEAREST)
        st.image(big, caption=row["path"])
    state = "kept" if d["keep"] else "rejected"
    st.markdown(f"**{state.upper()}** · label **{row['label']}**"
                + (f" → **{d['label_final']}**" if d["label_final"] != row["label"] else "")
                + f" · split {row['split']} ({row['usage']})")
    if "crowd_votes" in sig:
        from fer_core.crowd import votes_text

        text = votes_text(row)
        if text:
            st.markdown(text)
    reasons = recipe_mod.reasons_text([d["flags"] | (d["reasons"])], ", ")[0]
    if reasons:
        st.markdown(f"Reasons: `{reasons}`" + ("" if d["in_scope"] else " (out of the recipe's scope: not applied)"))
    if d["override"]:
        st.markdown(f"Manual override: **{d['override']}**")
    if d["group"] >= 0:
        members = sig["id"].to_numpy()[dec["group"].to_numpy() == d["group"]]
        st.caption(f"Duplicate group of {len(members)}; " + ("this copy is kept by the policy." if d["representative"]
                                                             else "another copy is preferred."))
    vals = []
    for col, meta in COLUMN_META.items():
        if col in sig and meta.filterable:
            f = rec.filters.get(col)
            cut = ""
            if f is not None and f.enabled:
                cut = " / ".join(x for x in (f"min {f.min:,.4g}" if f.min is not None else "",
                                             f"max {f.max:,.4g}" if f.max is not None else "") if x)
            vals.append({"signal": meta.title, "value": fmt_value(col, row[col]), "cut": cut})
    st.dataframe(pd.DataFrame(vals), hide_index=True, width="stretch", height=min(420, 38 + 35 * len(vals)))
    c1, c2, c3 = st.columns(3)
    if c1.button("Keep", key=f"ins-keep-{image_id}"):
        set_override(name, image_id, "keep")
        st.rerun()
    if c2.button("Reject", key=f"ins-rej-{image_id}"):
        set_override(name, image_id, "reject")
        st.rerun()
    if c3.button("Clear", key=f"ins-clear-{image_id}", disabled=not d["override"]):
        set_override(name, image_id, "clear")
        st.rerun()
    new_label = st.selectbox("Relabel as", ["—"] + [l for l in LABEL_ORDER if l != row["label"]],
                             key=f"ins-relabel-{image_id}")
    if new_label != "—" and st.button("Apply relabel", key=f"ins-relabel-btn-{image_id}"):
        set_override(name, image_id, "relabel", label=new_label)
        st.rerun()
    if store.family_status(name)["embeddings"]["complete"]:
        if st.button("Show its nearest neighbours", key=f"ins-nn-{image_id}"):
            st.session_state["nn_for"] = image_id
        if st.session_state.get("nn_for") == image_id:
            from fer_core import embedmap

            nb = embedmap.neighbours(name, image_id, k=12)
            npos = np.searchsorted(sig["id"].to_numpy(), nb["id"].to_numpy())
            st.caption("Nearest neighbours (face embedding), most similar first; caption: label · similarity")
            clickable_montage(name, inputs, nb["id"].tolist(), f"nn_{image_id}",
                              ["keep" if sig["label"].iat[i] == row["label"] else "review" for i in npos],
                              [f"{sig['label'].iat[i][:4]} {s:.2f}" for i, s in zip(npos, nb["similarity"])],
                              ncols=4, tile=64, picker=False)
