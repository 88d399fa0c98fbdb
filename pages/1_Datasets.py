"""Datasets: Kaggle credentials, download with live progress, local import, per-dataset summary."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from fer_core import catalog, datasets, jobs
from fer_core.about import about
from fer_core.config import cache_root, import_roots, path_import_allowed
from fer_core.errors import FerError
from fer_core.montage import montage_rows
from fer_core.sources import kaggle, registry
from ui.common import any_active, job_manager, live, live_jobs, page_done, render_jobs, setup_page, show_error

selected = setup_page("Datasets", "📥")
st.title("📥 Datasets")
st.caption("Get a facial-expression dataset into the studio: from Kaggle, or from a folder, zip or fer2013.csv "
           "(uploaded, or on this server). Downloads and imports run in the background; you can leave this page.")

# ---- credentials ---------------------------------------------------------------------------
typed: kaggle.KaggleCredentials | None = st.session_state.get("kaggle_creds")
try:
    effective = kaggle.resolve_credentials(typed)
except Exception:  # noqa: BLE001 - NoCredentials
    effective = None

tab_dl, tab_local, tab_col = st.tabs(["⬇️ Download from Kaggle", "📂 Import from disk", "🧩 Collections"])

with tab_dl:
    c1, c2 = st.columns([1, 1])
    with c1:
        st.subheader("Kaggle credentials")
        if effective is None:
            st.warning("No Kaggle credentials yet. Type them below, or set KAGGLE_USERNAME/KAGGLE_KEY "
                       "(or KAGGLE_API_TOKEN), or put kaggle.json in ~/.kaggle on the server.")
        else:
            src = {"typed": "typed here (this browser session only)", "env": "from the server's environment",
                   "kaggle.json": f"from {kaggle.kaggle_json_path()}", "access_token": "from ~/.kaggle/access_token"}
            st.success(f"Using credentials of **{effective.username or 'a token'}** — {src.get(effective.source)}.")
        with st.form("kaggle_creds_form", clear_on_submit=True):
            user = st.text_input("Kaggle username", key="kg_user")
            key = st.text_input("Kaggle key", type="password", key="kg_key",
                                help="From kaggle.com → Settings → API → Create New Token (kaggle.json).")
            token = st.text_input("…or an API token (KAGGLE_API_TOKEN)", type="password", key="kg_token")
            remember = st.checkbox("Remember on this server (writes ~/.kaggle/kaggle.json, mode 0600)", key="kg_remember")
            if st.form_submit_button("Use these credentials"):
                if token.strip():
                    st.session_state["kaggle_creds"] = kaggle.KaggleCredentials(username=user.strip(), token=token.strip())
                elif user.strip() and key.strip():
                    creds = kaggle.KaggleCredentials(user.strip(), key.strip())
                    st.session_state["kaggle_creds"] = creds
                    if remember:
                        try:
                            p = kaggle.save_kaggle_json(creds)
                            st.session_state["_creds_saved"] = str(p)
                        except Exception as exc:  # noqa: BLE001
                            show_error(exc)
                else:
                    st.session_state["_creds_problem"] = "Type a username and a key, or a token."
                st.rerun()
        if st.session_state.pop("_creds_problem", None):
            st.error("Type a username and a key, or a token.")
        if saved := st.session_state.pop("_creds_saved", None):
            st.info(f"Saved to {saved} (mode 0600).")
        if typed is not None and st.button("Forget the typed credentials"):
            del st.session_state["kaggle_creds"]
            st.rerun()

    with c2:
        st.subheader("Download")
        specs = [s for s in registry.SPECS.values() if s.kaggle_slug]
        options = [s.name for s in specs] + ["__other__"]
        choice = st.selectbox("Dataset", options, key="dl_choice", persist_state="session",
                              format_func=lambda n: "Other Kaggle slug…" if n == "__other__"
                              else f"{registry.SPECS[n].title} — {registry.SPECS[n].kaggle_slug}")
        if choice == "__other__":
            what = st.text_input("Kaggle slug (owner/dataset)", key="dl_slug", placeholder="owner/dataset")
            default_name = what.split("/")[-1].lower() if "/" in what else ""
            spec = None
        else:
            spec = registry.SPECS[choice]
            what = spec.name
            default_name = spec.name
            with st.expander("Layout and licence", expanded=False):
                st.markdown(f"**Layout:** {spec.layout}\n\n**Notes:** {spec.notes}\n\n"
                            f"**Layout knowledge:** {'checked on the real archive' if spec.verified == 'archive' else 'from public loaders, checked on fixtures only'}\n\n"
                            f"**Licence:** {spec.licence or 'see the dataset page'}")
        name = st.text_input("Register as", value=default_name, key=f"dl_name_{choice}")
        if st.button("Download and import", type="primary", disabled=not (what and name)):
            try:
                creds = kaggle.resolve_credentials(typed)
                from fer_core.store_paths import check_name
                check_name(name)
                env = creds.as_env() if creds.source == "typed" else None
                job_manager().submit(jobs.download_job(what, name, env=env))
                st.rerun()
            except Exception as exc:  # noqa: BLE001
                show_error(exc)

    live_jobs(kind=("download",), key="dl")

with tab_local:
    st.subheader("Import from disk")
    st.caption("A folder with one sub-folder per label (optionally under train/val/test), a zip of that "
               "(the Kaggle archive itself works), or the original fer2013.csv. From a folder, only the images "
               "and the label files (.csv, .lst) are copied; links are not followed.")
    roots = import_roots()
    address = st.get_option("server.address")
    path_ok = path_import_allowed(address)
    spec_names = ["(detect)"] + list(registry.SPECS)

    def _suggest_name(src_: str) -> None:
        """Suggest a dataset name from the chosen path or upload, unless the person typed their own."""
        new = Path(src_.rstrip("/")).stem.lower().replace(" ", "-") if src_.strip() else ""
        if new and st.session_state.get("imp_name", "") in ("", st.session_state.get("_imp_suggested")):
            st.session_state["imp_name"] = st.session_state["_imp_suggested"] = new

    def _on_path():
        _suggest_name(st.session_state.get("imp_path") or "")

    def _on_upload():
        if (up_ := st.session_state.get("imp_upload")) is not None:  # a removed upload changes nothing
            _suggest_name(up_.name)

    if path_ok:
        how = st.radio("Source", ["path", "upload"], key="imp_how", horizontal=True,
                       format_func={"path": "A path on this server", "upload": "Upload a zip or csv"}.get)
    else:
        how = "upload"
        st.info(f"Import from a path on the server is off: this server listens on "
                f"'{address or 'every interface'}', not only on this machine, and a path typed here would be read "
                "from the server's disk. Upload the file instead. (The operator can turn path import on with "
                "FER_ALLOW_PATH_IMPORT=1, behind an authenticating proxy.)")
    lc1, lc2 = st.columns(2)
    with lc1:
        path, up = "", None
        if how == "path":
            path = st.text_input("Path on the server", key="imp_path", placeholder=f"{roots[0]}/fer2013.zip",
                                 on_change=_on_path)
            st.caption("Read only inside " + ", ".join(f"`{r}`" for r in roots)
                       + " (the operator adds folders with FER_IMPORT_ROOTS).")
        else:
            up = st.file_uploader("Upload a zip or csv", type=["zip", "csv"], key="imp_upload",
                                  on_change=_on_upload)
    with lc2:
        imp_name = st.text_input("Register as", key="imp_name")
        imp_spec = st.selectbox("Layout", spec_names, key="imp_spec",
                                format_func=lambda n: n if n == "(detect)" else f"{n} — {registry.SPECS[n].title}")
    try:
        replacing = bool(imp_name) and datasets.exists(imp_name)
    except FerError:  # not a valid name: said when Import is pressed
        replacing = False
    confirmed = True
    if replacing:
        confirmed = st.checkbox(f"Replace the images of the existing dataset '{imp_name}' (its signals, reviews "
                                "and recipes are kept)", key=f"imp_replace_{imp_name}")
    if st.button("Import", type="primary", disabled=not (imp_name and (path or up is not None) and confirmed)):
        try:
            from fer_core.store_paths import check_name
            check_name(imp_name)
            if how == "upload":
                dest = cache_root() / "uploads" / uuid.uuid4().hex[:10] / Path(up.name).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(up.getbuffer())
                source, within = dest, ()
            else:  # the same words whether the path is outside the import folders or missing
                source, within = datasets.confine(path, roots), tuple(roots)   # the job checks again
            job_manager().submit(jobs.import_job(source, imp_name, None if imp_spec == "(detect)" else imp_spec,
                                                 within))
            st.rerun()
        except Exception as exc:  # noqa: BLE001
            show_error(exc)

    # while an import runs, the outcome of an earlier one (an old error) is not shown above it
    live(lambda: render_jobs(kind=("import",), key="imp", show_finished=0 if any_active(("import",)) else 1),
         ("import",))

with tab_col:   # merged training sets (fer_core.collections): several datasets, each with its recipe, as one dataset
    from fer_core import collections
    from fer_core.sources.labels import CANONICAL
    from fer_core.workspace import Workspace

    st.subheader("Merge datasets into one training set")
    st.caption("Each member brings what its own recipe keeps (its splits and your overrides included), brought to "
               "48×48 gray on one taxonomy. A picture found in two members is kept once (the test copy, else the "
               "first member's), so no training image is a copy of any member's test image. The collection is then "
               "a dataset like any other: scan, curate, export, train and A/B-test it. Same as `python -m fer_core "
               "collection create NAME --members a,b`.")
    plain = [n for n in datasets.list_datasets() if datasets.load(n).meta.get("spec") != collections.SPEC]
    cc1, cc2 = st.columns([2, 1])
    col_members = cc1.multiselect("Members (in order of preference)", plain, key="col_members")
    col_name = cc2.text_input("Collection name", key="col_name", placeholder="fer-ck")
    col_contempt = cc2.selectbox("Contempt", ["keep", "drop"] + [lab for lab in CANONICAL if lab != "contempt"],
                                 key="col_contempt", help="keep it as its own class, drop it (listed as left out), "
                                 "or map it to another label")
    col_recipes = {}
    for m in col_members:
        choice = cc1.selectbox(f"Recipe of {m}", ["default", "raw"] + Workspace(m).recipes(), key=f"col_rec_{m}",
                               help="default: its data-derived default; raw: every image; or one of its saved recipes")
        if choice != "default":
            col_recipes[m] = choice
    if st.button("Create and build", type="primary", disabled=not (col_members and col_name), key="col_create"):
        try:
            collections.check_target(col_name)
            collections.define(col_name, col_members, col_recipes, col_contempt)   # refused here, not in the job
            job_manager().submit(jobs.collection_job(col_name, tuple(col_members), col_recipes, col_contempt))
            st.rerun()
        except FerError as exc:
            show_error(exc)
    live_jobs(kind=("collection",), key="col")
    names = collections.list_collections()
    if names:
        st.markdown("**Collections**")
        rows = []
        for n in names:
            try:
                cst = collections.status(n)
            except FerError as exc:
                rows.append({"collection": n, "members": "", "images": None, "state": exc.message})
                continue
            rows.append({"collection": n, "members": ", ".join(f"{m['dataset']} ({m.get('recipe', 'default')})"
                                                              for m in cst["definition"]["members"]),
                         "images": cst["record"]["images"] if cst["record"] else None,
                         "state": ("stale: " + "; ".join(cst["stale"]) + " — rebuild") if cst["stale"] else "up to date"})
        st.dataframe(pd.DataFrame(rows), width="stretch", hide_index=True)
        show = st.selectbox("Show", names, key="col_show")
        try:
            cst = collections.status(show)
            if cst["record"]:
                st.markdown("**Images per source × split × label**")
                st.dataframe(collections.counts_frame(cst["record"]), width="stretch", hide_index=True)
                cp = cst["record"]["copies"]
                st.caption(f"Cross-member copies left out: {cp['dropped']:,} ({cp['through_link']:,} through a link, "
                           f"{cp['by_pixels']:,} by pixels). " + " ".join(f"Note: {x}." for x in cst["record"]["notes"]))
            if cst["stale"] and st.button(f"Rebuild {show}", key="col_rebuild"):
                job_manager().submit(jobs.collection_job(show))
                st.rerun()
        except FerError as exc:
            show_error(exc)

# ---- summary of the selected dataset ---------------------------------------------------------
st.divider()


@st.cache_data(show_spinner=False, max_entries=8)
def _samples(name: str, chash: str, per_label: int = 14) -> np.ndarray:
    ds = datasets.load(name)
    cat = ds.catalog
    groups = {}
    for lab, g in cat.groupby("label", sort=False):
        pick = g.sample(min(per_label, len(g)), random_state=0)
        groups[lab] = [ds.image_path(p) for p in pick["path"]]
    order = [l for l in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt") if l in groups]
    return montage_rows({k: groups[k] for k in order}, ncols=per_label, tile=56)


def _split_panel(name: str, ds) -> None:
    """The stored train/val/test assignment of a dataset without splits (fer_core.splits), and a button to
    make or change it (the same as `python -m fer_core split NAME --by subject --seed S`)."""
    from fer_core import splits

    st.markdown("**Split assignment** (this dataset has no split of its own)")
    try:
        d = splits.describe(name)
    except FerError as exc:
        show_error(exc)
        d = None
    if d is not None:
        ratios = "/".join(f"{r:g}" for r in d["ratios"])
        st.caption(f"Split by **{d['by']}**, seed {d['seed']}, ratios {ratios} (made {d['created']}); used by "
                   "Quality, Duplicates, Export and Train. The import itself is unchanged."
                   + (" **Stale: made for another import, not applied — make it again.**" if d["stale"] else ""))
        table = pd.DataFrame(d["counts"]).T.fillna(0).astype(int)
        table["total"] = table.sum(axis=1)
        idn = d.get("identity")
        if d["subjects"]:
            table["identity clusters" if idn else "subjects"] = pd.Series(d["subjects"])
        st.dataframe(table, width="stretch")
        if idn:
            st.caption(f"{idn['clusters']:,} identity clusters at cosine ≥ {idn['threshold']:g} (average linkage of the "
                       f"SFace face embeddings; SFace's same-person threshold is {splits.IDENTITY_THRESHOLD}); largest "
                       f"{idn['largest']:,} images, {idn['single']:,} alone"
                       + (f", {idn['without_embedding']:,} without an embedding (each on its own)"
                          if idn["without_embedding"] else "")
                       + f". Clusters in two splits: {d['subjects_in_two_splits']} — the clusters estimate who is who, "
                       "so one person split into two clusters can still straddle.")
        else:
            st.caption(f"Subjects in two splits: {d['subjects_in_two_splits']}" if d["subjects_in_two_splits"] is not None
                       else "Not grouped: the same person may appear in two splits.")
    else:
        st.caption("Every image is in train, so nothing can be tested on it. A split keeps each subject on one side.")
    known = ds.meta.get("spec") in splits.PATTERNS
    options = (["subject"] if known else []) + ["identity", "none"]
    names = {"subject": "subject (from the file names)", "identity": "identity clusters (face embeddings)",
             "none": "no grouping"}
    c = st.columns([1, 2, 1, 1])
    seed = c[0].number_input("Seed", min_value=0, value=int(d["seed"]) if d else 0, step=1, key=f"split_seed_{name}")
    by = c[1].radio("Keep together", options, index=options.index(d["by"]) if d and d["by"] in options else 0,
                    format_func=names.get, key=f"split_by_{name}", horizontal=True)
    thr = None
    if by == "identity":
        thr = c[2].number_input("Same person at cosine ≥", min_value=0.05, max_value=0.95, step=0.01,
                                value=float((d.get("identity") or {}).get("threshold", splits.IDENTITY_THRESHOLD))
                                if d else splits.IDENTITY_THRESHOLD, key=f"split_thr_{name}",
                                help="Higher: people are split more finely (more risk that one straddles two splits); "
                                "lower: more people joined into one cluster.")
    if c[3].button("Change split" if d else "Split", key=f"split_btn_{name}"):
        try:
            splits.make(name, by=by, seed=int(seed), threshold=thr)   # the pages' inputs are keyed by it too
            st.rerun()
        except FerError as exc:
            show_error(exc)
    st.caption(f"Or: `python -m fer_core split {name} --by {by} --seed {int(seed)} --ratios 0.8,0.1,0.1"
               + (f" --threshold {thr:g}" if thr is not None else "") + "`"
               + ("" if known else " (subjects are not named by this dataset's files: group by identity clusters, "
                  "which need the face embeddings, or not at all)"))


if selected:
    try:
        ds = datasets.load(selected)
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        st.stop()
    cat, rej, meta = ds.catalog, ds.rejected, ds.meta
    st.header(f"Summary: {selected}")
    src = meta.get("source", {})
    src_txt = f"Kaggle `{src.get('slug')}` v{src.get('version')}" if src.get("kind") == "kaggle" else f"{src.get('kind')} `{src.get('path')}`"
    m = st.columns(6)
    m[0].metric("Images", f"{len(cat):,}")
    m[1].metric("Rejected at import", f"{len(rej):,}")
    m[2].metric("Labels", f"{cat['label'].nunique()}")
    sp = meta.get("splits", {})
    for col, split in zip(m[3:], ("train", "val", "test")):
        col.metric(split.capitalize(), f"{sp.get(split, 0):,}")
    st.caption(f"Layout: {meta.get('title')} · source: {src_txt} · imported {meta.get('imported_at')} · "
               f"catalog {meta.get('catalog_hash', '')[:12]}")
    with st.expander("About this dataset: licence, splits, subjects, images, labels", expanded=False):
        st.table(pd.DataFrame(about(ds), columns=["", "what to know"]).set_index(""))
    t1 = t2 = st.container()  # full width: in a half-width column the tables' last columns were clipped
    with t1:
        st.markdown("**Images per split × label**")
        st.dataframe(catalog.counts(cat, "split"), width="stretch")
        if cat["usage"].nunique() > 1:
            st.markdown("**Images per original usage × label**")
            st.dataframe(catalog.counts(cat, "usage"), width="stretch")
    with t2:
        agg = cat.groupby(["split", "label"]).size().reset_index(name="images")
        fig = px.bar(agg, x="label", y="images", color="split", barmode="group",
                     category_orders={"split": ["train", "val", "test"]}, height=360)
        fig.update_layout(margin=dict(l=10, r=10, t=30, b=10), legend_title_text="split")
        st.plotly_chart(fig, width="stretch", key="counts_chart")
    if not meta.get("has_official_split") and set(cat["split"].unique()) <= {"train"}:
        _split_panel(selected, ds)
    st.markdown("**Sample images per label**")
    st.image(_samples(selected, meta.get("catalog_hash", "")), width="content")
    st.markdown(f"**Rejected at import ({len(rej):,})**")
    if len(rej):
        st.dataframe(rej, width="stretch", hide_index=True, height=min(400, 38 + 35 * len(rej)))
    else:
        st.caption("Every file was readable.")

page_done()
