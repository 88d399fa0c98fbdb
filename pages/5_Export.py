"""Export: the kept images as a cleaned dataset (ImageFolder, optional fer2013.csv and CLAHE), with a
manifest, as a background job; download as a zip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from fer_core import datasets, decisions as dec_mod, export, jobs, staleness
from fer_core.montage import load_gray_or_color, montage
from fer_core.store_paths import check_name
from ui.common import job_manager, live_jobs, page_done, show_error
from ui.curation import (current_decisions, current_recipe, curation_page, recipe_in_use, recipe_sidebar, recipe_state,
                         summary_sidebar)

name, inputs = curation_page("Export", "📦")
sig = inputs.signals
rec = current_recipe(name, inputs)
recipe_sidebar(name, inputs)
dec = current_decisions(name, inputs)
summary_sidebar(inputs, dec)
rs = recipe_state(name, inputs)

if "test" in rec.scope:
    st.warning("This recipe's scope includes the **test** split: the export will filter test images too, so "
               "accuracy measured on it is no longer comparable with the official split.")
else:
    st.info(f"Scope: {', '.join(rec.scope)}. The test split is exported untouched ({int((sig['split'] == 'test').sum()):,} images).")

c1, c2 = st.columns([1, 1])
with c1:
    ex_name = st.text_input("Export name", value=f"{name}-clean", key="ex_name", persist_state="session")
    want_csv = st.checkbox("Also write fer2013.csv (48×48 grey; emotion,pixels,Usage)", key="ex_csv", persist_state="session")
    use_clahe = st.checkbox("Apply CLAHE (contrast-limited adaptive histogram equalisation) to every exported image",
                            key="ex_clahe", persist_state="session",
                            help="Applied to all splits so that training and test images match; written as PNG.")
    clip = st.slider("CLAHE clip limit", 0.5, 8.0, 2.0, 0.5, key="ex_clip", disabled=not use_clahe, persist_state="session")
    tile = st.slider("CLAHE tile grid", 2, 16, 8, 1, key="ex_tile", disabled=not use_clahe, persist_state="session")
with c2:
    keep = dec["keep"].to_numpy()
    t = pd.crosstab(sig["split"], np.where(keep, "kept", "rejected")).reindex(["train", "val", "test"]).fillna(0).astype(int)
    st.markdown("**Images per split**")
    st.dataframe(t, width="stretch")
    relabels = int(((dec["override"] == "relabel") & dec["in_scope"] & dec["keep"]).sum())
    st.caption(f"{recipe_in_use(name)}; "
               f"{int((dec['override'] != '').sum()):,} manual overrides ({relabels:,} relabels, written under their new label).")
if use_clahe:
    st.markdown("**CLAHE preview** (before → after)")
    ds = datasets.load(name)
    pick = sig[keep].sample(min(8, int(keep.sum())), random_state=1)
    before = [load_gray_or_color(ds.image_path(p)) for p in pick["path"]]
    cl = export.Clahe(clip, tile)
    after = [cv2.cvtColor(cl.apply(cv2.cvtColor(b, cv2.COLOR_RGB2BGR) if b.ndim == 3 and b.shape[2] == 3 else b), cv2.COLOR_BGR2RGB)
             if b.ndim == 3 else cl.apply(b) for b in before]
    img, _ = montage(before + after, ncols=len(before), tile=96)
    st.image(img)

if st.button("Export", type="primary", key="ex_go"):
    try:
        check_name(ex_name, "export")
        rdir = dec_mod.recipes_dir(name)
        rfile = rdir / f".export-{rec.fingerprint()}.yaml"
        rec.save(rfile)
        job_manager().submit(jobs.export_job(name, rfile, ex_name, zip_=True, csv=want_csv,
                                             clahe=(clip, tile) if use_clahe else None))
        st.rerun()
    except Exception as exc:  # noqa: BLE001
        show_error(exc)


live_jobs(kind=("export",), dataset=name, key=f"ex-{name}")

st.divider()
st.subheader("Exports")
exports = [e for e in export.list_exports() if e["manifest"]["source"]["dataset"] == name]
if not exports:
    st.caption("No export of this dataset yet.")
else:
    ds = datasets.load(name)
    now = staleness.Current.of(ds, sig, dec, rec)   # the decisions an export made now would hold
for e in exports:
    m = e["manifest"]
    stale, why = staleness.is_stale(m, now, ds)
    flag = {True: " · ⚠️ stale", None: " · freshness unknown"}.get(stale, " · ✓ current")
    with st.expander(f"{e['name']} — {m['counts']['after_total']:,} of {m['counts']['before_total']:,} images · "
                     f"{m['created']}{flag}", expanded=e is exports[0]):
        if stale:
            st.warning(f"{why[0].upper()}{why[1:]}: export again to get the current decisions.", icon="⚠️")
        else:
            st.caption(f"{why[0].upper()}{why[1:]}.")
        st.caption(f"Folder: `{e['path']}` · recipe fingerprint {m['recipe_fingerprint']} · CLAHE "
                   f"{m['clahe'] or 'off'} · overrides {m['overrides']['count']}")
        after = pd.DataFrame(m["counts"]["after"]).T.fillna(0).astype(int)
        st.dataframe(after, width="stretch")
        zpath = e["path"].parent / f"{e['name']}.zip"
        if zpath.exists():
            st.download_button(f"Download {zpath.name} ({zpath.stat().st_size / 2**20:,.1f} MiB)",
                               data=lambda z=zpath: z.read_bytes(), file_name=zpath.name, mime="application/zip",
                               key=f"dl-{e['name']}")
        else:
            if st.button("Prepare zip", key=f"zip-{e['name']}"):
                export.zip_export(e["path"])
                st.rerun()
        st.download_button("manifest.json", json.dumps(m, indent=1, sort_keys=True), file_name="manifest.json",
                           mime="application/json", key=f"mf-{e['name']}")

page_done()
